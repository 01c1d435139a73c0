//! What makes VOS and NPOS those methods, against `f64` references and simulations:
//! VOS keeps the least likely of many draws from the class-conditional Gaussian fitted to the
//! buffer (shared covariance); NPOS perturbs the boundary embeddings of each class (largest
//! k-th neighbour distance) and keeps the candidates farthest from their class.
#![allow(clippy::unwrap_used)] // a failure there is a test failure
#![allow(clippy::needless_range_loop)] // the f64 references index like the formulas

mod common;

use std::sync::Arc;

use common::{clustered_bank, for_each_backend};
use hamos_api::{Backend, ClassBank, Sampler, SynthesisInput};
use hamos_samplers::barrier::none::NoBarrier;
use hamos_samplers::energy::knn::KnnEnergy;
use hamos_samplers::{npos::Npos, vos::Vos};
use rand::Rng;
use rand_distr::StandardNormal;

type Rows = Vec<Vec<f64>>;

/// Each class's rows in `f64`.
fn members_of(bank: &ClassBank) -> Vec<Rows> {
    let (capacity, dim) = (bank.capacity(), bank.dim());
    let values = bank.embeddings().to_vec_f32().unwrap();
    (0..bank.num_classes())
        .map(|c| {
            (0..bank.counts()[c])
                .map(|i| {
                    values[(c * capacity + i) * dim..(c * capacity + i + 1) * dim]
                        .iter()
                        .map(|&x| f64::from(x))
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt()
}

/// The `k`-th smallest distance from `z` to `rows` (1-based `k`).
fn kth_distance(z: &[f64], rows: &[Vec<f64>], k: usize) -> f64 {
    let mut d: Vec<f64> = rows.iter().map(|r| distance(z, r)).collect();
    d.sort_by(f64::total_cmp);
    d[(k - 1).min(d.len() - 1)]
}

/// Synthesizes and returns each outlier with its class.
fn outliers(sampler: &dyn Sampler, bank: &ClassBank, seed: u64) -> Vec<(usize, Vec<f64>)> {
    let prototypes = bank.prototypes().unwrap();
    let input = SynthesisInput { bank, prototypes: &prototypes };
    let mut rng = hamos_api::rng_from_seed(seed);
    let out = sampler.synthesize(&input, &KnnEnergy { k: 5 }, &NoBarrier {}, &mut rng).unwrap();
    let rows = out.outliers.to_rows_f32().unwrap();
    out.tags.iter().zip(rows).map(|(t, r)| (t.class_u, r.iter().map(|&x| f64::from(x)).collect())).collect()
}

/// Mean and variance.
fn moments(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (mean, values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0))
}

/// `|a - b|` in standard errors of the difference of two sample means.
fn separation(a: &[f64], b: &[f64]) -> f64 {
    let ((ma, va), (mb, vb)) = (moments(a), moments(b));
    (ma - mb).abs() / (va / a.len() as f64 + vb / b.len() as f64).sqrt()
}

/// The Gaussian VOS fits: class means and the pooled covariance plus `ridge` times its mean
/// diagonal; returns the means, the Cholesky factor `L` and `W = (L L')^-1`.
fn fitted_gaussian(members: &[Rows], ridge: f64) -> (Rows, Rows, Rows) {
    let dim = members[0][0].len();
    let means: Rows = members
        .iter()
        .map(|m| (0..dim).map(|j| m.iter().map(|x| x[j]).sum::<f64>() / m.len() as f64).collect())
        .collect();
    let total: usize = members.iter().map(Vec::len).sum();
    let mut cov = vec![vec![0.0; dim]; dim];
    for (class, rows) in members.iter().enumerate() {
        for x in rows {
            for a in 0..dim {
                for b in 0..dim {
                    cov[a][b] += (x[a] - means[class][a]) * (x[b] - means[class][b]) / total as f64;
                }
            }
        }
    }
    let shift = ridge * (0..dim).map(|i| cov[i][i]).sum::<f64>() / dim as f64;
    (0..dim).for_each(|i| cov[i][i] += shift);
    let mut l = vec![vec![0.0; dim]; dim];
    for i in 0..dim {
        for j in 0..=i {
            let rest: f64 = (0..j).map(|k| l[i][k] * l[j][k]).sum();
            l[i][j] = if i == j { (cov[i][i] - rest).sqrt() } else { (cov[i][j] - rest) / l[j][j] };
        }
    }
    // W = L^-T L^-1, column by column.
    let mut inverse_l = vec![vec![0.0; dim]; dim];
    for col in 0..dim {
        for i in 0..dim {
            let target = if i == col { 1.0 } else { 0.0 };
            inverse_l[i][col] = (target - (0..i).map(|k| l[i][k] * inverse_l[k][col]).sum::<f64>()) / l[i][i];
        }
    }
    let w = (0..dim)
        .map(|a| (0..dim).map(|b| (0..dim).map(|k| inverse_l[k][a] * inverse_l[k][b]).sum()).collect())
        .collect();
    (means, l, w)
}

/// The smallest Mahalanobis distance squared from `m` to the ray through unit `z`: the draw
/// `p` behind an outlier `z = p / |p|` lies on it, so this is what normalization leaves of its
/// distance from the class mean.
fn ray_distance(z: &[f64], m: &[f64], w: &Rows) -> f64 {
    let apply = |v: &[f64]| -> Vec<f64> { w.iter().map(|row| dot(row, v)).collect() };
    let (wz, wm) = (apply(z), apply(m));
    dot(m, &wm) - dot(z, &wm).powi(2) / dot(z, &wz)
}

#[test]
fn vos_keeps_the_least_likely_gaussian_draws() {
    for_each_backend(vos_keeps_the_least_likely_gaussian_draws_on);
}

fn vos_keeps_the_least_likely_gaussian_draws_on(backend: Arc<dyn Backend>) {
    let (classes, dim) = (4, 8);
    let bank = clustered_bank(&backend, classes, 50, dim, 0.15, 101).unwrap();
    let vos = Vos::default();
    let (means, l, w) = fitted_gaussian(&members_of(&bank), vos.ridge);
    let got: Vec<f64> =
        outliers(&vos, &bank, 102).iter().map(|(c, z)| ray_distance(z, &means[*c], &w)).collect();
    // Reference simulation: `candidates` draws per class, the `keep_per_class` least likely.
    let mut rng = hamos_api::rng_from_seed(103);
    let (mut kept, mut typical) = (Vec::new(), Vec::new());
    for mean in &means {
        let mut draws: Vec<(f64, Vec<f64>)> = (0..vos.candidates)
            .map(|_| {
                let eps: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
                let p: Vec<f64> =
                    (0..dim).map(|i| mean[i] + (0..=i).map(|k| l[i][k] * eps[k]).sum::<f64>()).collect();
                (dot(&eps, &eps), p)
            })
            .collect();
        typical.extend(draws[..vos.keep_per_class].iter().map(|(_, p)| ray_distance(p, mean, &w)));
        draws.sort_by(|a, b| b.0.total_cmp(&a.0));
        kept.extend(draws[..vos.keep_per_class].iter().map(|(_, p)| ray_distance(p, mean, &w)));
    }
    assert!(separation(&kept, &typical) > 8.0, "the statistic tells tail draws from typical ones");
    let (got_mean, want_mean) = (moments(&got).0, moments(&kept).0);
    assert!(
        separation(&got, &kept) < 4.0,
        "VOS outliers' ray distance {got_mean:.3} vs {want_mean:.3} for the least likely draws (typical draws: {:.3})",
        moments(&typical).0
    );
}

#[test]
fn npos_perturbs_boundary_embeddings_and_keeps_the_farthest() {
    for_each_backend(npos_perturbs_boundary_embeddings_and_keeps_the_farthest_on);
}

fn npos_perturbs_boundary_embeddings_and_keeps_the_farthest_on(backend: Arc<dyn Backend>) {
    let bank = clustered_bank(&backend, 4, 60, 8, 0.15, 111).unwrap();
    let members = members_of(&bank);
    let k = 10;
    let boundary: Vec<Vec<usize>> = members
        .iter()
        .map(|rows| {
            // Largest distance to the k-th other member (the member itself is the first).
            let mut scored: Vec<(f64, usize)> =
                rows.iter().enumerate().map(|(i, x)| (kth_distance(x, rows, k + 1), i)).collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.iter().take(10).map(|&(_, i)| i).collect()
        })
        .collect();

    // Tiny noise: every outlier sits on one of its class's boundary embeddings.
    let tight = Npos { k, noise_std: 0.002, ..Npos::default() };
    for (class, z) in outliers(&tight, &bank, 112) {
        let nearest = (0..members[class].len())
            .min_by(|&a, &b| distance(&z, &members[class][a]).total_cmp(&distance(&z, &members[class][b])))
            .unwrap();
        assert!(
            boundary[class].contains(&nearest),
            "class {class}: nearest member {nearest} is not a boundary one"
        );
        assert!(distance(&z, &members[class][nearest]) < 0.05);
    }

    // Real noise: the kept candidates are the farthest from their class (largest k-th
    // distance), against a simulation of the candidates around the reference boundary.
    let npos = Npos { k, noise_std: 0.1, ..Npos::default() };
    let got: Vec<f64> =
        outliers(&npos, &bank, 113).iter().map(|(c, z)| kth_distance(z, &members[*c], k)).collect();
    let mut rng = hamos_api::rng_from_seed(114);
    let (mut kept, mut all) = (Vec::new(), Vec::new());
    for (class, rows) in members.iter().enumerate() {
        let mut scores: Vec<f64> = boundary[class]
            .iter()
            .flat_map(|&b| std::iter::repeat_n(b, npos.samples_per_boundary))
            .map(|b| {
                let p: Vec<f64> = rows[b]
                    .iter()
                    .map(|x| x + npos.noise_std * rng.sample::<f64, _>(StandardNormal))
                    .collect();
                let n = dot(&p, &p).sqrt();
                kth_distance(&p.iter().map(|x| x / n).collect::<Vec<_>>(), rows, k)
            })
            .collect();
        all.extend(scores.iter().step_by(npos.boundary_per_class).copied());
        scores.sort_by(|a, b| b.total_cmp(a));
        kept.extend(scores[..npos.keep_per_class].iter().copied());
    }
    assert!(separation(&kept, &all) > 8.0, "the statistic tells kept candidates from the rest");
    assert!(
        separation(&got, &kept) < 4.0,
        "NPOS outliers' k-th distance {:.4} vs {:.4} for the farthest candidates (all: {:.4})",
        moments(&got).0,
        moments(&kept).0,
        moments(&all).0
    );
}
