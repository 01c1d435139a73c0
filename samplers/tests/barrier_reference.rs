//! The vMF-KDE barrier against `f64` references: its value is Eqns 10-12 (normalizer, kernel
//! sums, softmax over classes) on random inputs and bandwidths, and at the benchmark's scale
//! (`d = 128`, `S = 1000`) the screening bounds enclose every class's exact log density and
//! the screened verdicts equal the exact ones.
#![allow(clippy::unwrap_used)] // a failure there is a test failure

mod common;

use std::sync::Arc;

use common::{clustered_bank, for_each_backend, unit};
use hamos_api::{Backend, ClassBank, IdBarrier, Thresholds};
use hamos_samplers::barrier::vmf_kde::VmfKdeBarrier;

/// `I_nu(x)` by its power series (`nu` a non-negative integer, moderate `x`).
fn bessel_i(nu: u32, x: f64) -> f64 {
    let (mut term, mut sum) = ((x / 2.0).powi(nu as i32) / (1..=nu).map(f64::from).product::<f64>(), 0.0);
    for k in 0..200u32 {
        sum += term;
        term *= (x / 2.0).powi(2) / (f64::from(k + 1) * f64::from(k + 1 + nu));
    }
    sum
}

/// Per class `p_c(z)` of Eqn 11 with the vMF kernel of Eqn 10 (`d` even), in `f64`.
fn class_densities(z: &[f64], members: &[Vec<Vec<f64>>], kappa: f64) -> Vec<f64> {
    let d = z.len() as u32;
    let normalizer = kappa.powi(d as i32 / 2 - 1)
        / ((2.0 * std::f64::consts::PI).powi(d as i32 / 2) * bessel_i(d / 2 - 1, kappa));
    members
        .iter()
        .map(|class| {
            let sum: f64 = class
                .iter()
                .map(|x| normalizer * (kappa * x.iter().zip(z).map(|(a, b)| a * b).sum::<f64>()).exp())
                .sum();
            sum / class.len() as f64
        })
        .collect()
}

/// `-log max_c P_c(z)` with `P_c` the softmax of Eqn 12.
fn reference_energy(z: &[f64], members: &[Vec<Vec<f64>>], kappa: f64) -> f64 {
    let p = class_densities(z, members, kappa);
    let total: f64 = p.iter().sum();
    -(p.iter().copied().fold(0.0, f64::max) / total).ln()
}

/// Each class's valid rows in `f64`.
fn members_of(bank: &ClassBank) -> Vec<Vec<Vec<f64>>> {
    let (capacity, dim) = (bank.capacity(), bank.dim());
    let values = bank.embeddings().to_vec_f32().unwrap();
    bank.counts()
        .iter()
        .enumerate()
        .map(|(c, &n)| {
            (0..n)
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

fn rows_f64(values: &[f32], dim: usize) -> Vec<Vec<f64>> {
    values.chunks(dim).map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect()
}

#[test]
fn barrier_value_is_eqns_10_to_12() {
    for_each_backend(barrier_value_is_eqns_10_to_12_on);
}

fn barrier_value_is_eqns_10_to_12_on(backend: Arc<dyn Backend>) {
    let (classes, capacity, dim) = (4, 30, 8);
    let mut rng = hamos_api::rng_from_seed(91);
    // Unequal fill: padding rows must not count, and the class sizes enter Eqn 11.
    let fill = [30usize, 17, 5, 30];
    let centres = hamos_api::backend::randn_host(classes * dim, 0.0, 1.0, &mut rng);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for (c, &n) in fill.iter().enumerate() {
        for _ in 0..n {
            let noise = hamos_api::backend::randn_host(dim, 0.0, 0.5, &mut rng);
            rows.extend(unit(
                &centres[c * dim..(c + 1) * dim].iter().zip(&noise).map(|(a, b)| a + b).collect::<Vec<_>>(),
            ));
            labels.push(c);
        }
    }
    let bank = ClassBank::from_rows(&backend, &rows, dim, &labels, classes, capacity).unwrap();
    let members = members_of(&bank);
    let points: Vec<f32> =
        (0..60).flat_map(|_| unit(&hamos_api::backend::randn_host(dim, 0.0, 1.0, &mut rng))).collect();
    let z = backend.from_f32(&points, &[60, dim]).unwrap();
    let host = rows_f64(&points, dim);
    for kappa in [0.5, 2.0, 7.3] {
        let barrier = VmfKdeBarrier { kappa, screen: false, ..VmfKdeBarrier::default() };
        let got = barrier.id_energy(&z, &bank).unwrap().unwrap().to_vec_f32().unwrap();
        let log_density = barrier.class_log_density(&z, &bank).unwrap().to_vec_f32().unwrap();
        for (i, point) in host.iter().enumerate() {
            let want = reference_energy(point, &members, kappa);
            assert!(
                (f64::from(got[i]) - want).abs() < 1e-4 * (1.0 + want),
                "kappa {kappa}, point {i}: {} vs {want}",
                got[i]
            );
            // log p_c without the shared normalizer of Eqn 10.
            let normalizer = class_densities(point, &[vec![vec![0.0; dim]]], kappa)[0];
            for (c, p) in class_densities(point, &members, kappa).iter().enumerate() {
                let want = (p / normalizer).ln();
                let got = f64::from(log_density[i * classes + c]);
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "kappa {kappa}, point {i}, class {c}: {got} vs {want}"
                );
            }
        }
        // Admission is E(z) > E(b) - delta, b the chain's start.
        let starts = z.narrow(0, 0, 10).unwrap();
        let mut thresholds = barrier.thresholds(&starts, &bank).unwrap().unwrap();
        let start_of: Vec<usize> = (0..60).map(|i| (i * 7) % 10).collect();
        let mask = barrier.admits(&z, &start_of, &mut thresholds, &bank).unwrap().mask.to_vec_f32().unwrap();
        for (i, &start) in start_of.iter().enumerate() {
            let margin = reference_energy(&host[i], &members, kappa)
                - (reference_energy(&host[start], &members, kappa) - barrier.delta);
            if margin.abs() > 1e-4 {
                assert_eq!(mask[i] == 1.0, margin > 0.0, "kappa {kappa}, point {i}: margin {margin}");
            }
        }
    }
}

/// The benchmark's regime: 10 classes of 1000 rows in 128 dimensions, clustered like `hamos
/// bench synth` (noise of norm about 0.3 around each centre).
fn benchmark_bank(backend: &Arc<dyn Backend>) -> ClassBank {
    clustered_bank(backend, 10, 1000, 128, 0.3 / (128f32).sqrt(), 93).unwrap()
}

/// Starts between class pairs and proposals around them at three spreads, like a run's.
fn starts_and_proposals(
    prototypes: &[Vec<f32>],
    count: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let (classes, dim) = (prototypes.len(), prototypes[0].len());
    let mut rng = hamos_api::rng_from_seed(seed);
    let starts: Vec<f32> = (0..20)
        .flat_map(|i| {
            let (a, b) = (&prototypes[i % classes], &prototypes[(i * 3 + 1) % classes]);
            unit(&a.iter().zip(b).map(|(p, q)| p + q).collect::<Vec<_>>())
        })
        .collect();
    let (mut points, mut start_of) = (Vec::new(), Vec::new());
    for i in 0..count {
        let start = &starts[(i % 20) * dim..(i % 20 + 1) * dim];
        let spread = [0.005f32, 0.03, 0.1, 0.3][i % 4];
        let noise = hamos_api::backend::randn_host(dim, 0.0, 1.0, &mut rng);
        points.extend(unit(&start.iter().zip(&noise).map(|(s, n)| s + spread * n).collect::<Vec<_>>()));
        start_of.push(i % 20);
    }
    (starts, points, start_of)
}

#[test]
fn bounds_enclose_each_exact_class_log_density_at_benchmark_scale() {
    for_each_backend(bounds_enclose_each_exact_class_log_density_at_benchmark_scale_on);
}

fn bounds_enclose_each_exact_class_log_density_at_benchmark_scale_on(backend: Arc<dyn Backend>) {
    let bank = benchmark_bank(&backend);
    let members = members_of(&bank);
    let prototypes = bank.prototypes().unwrap().to_rows_f32().unwrap();
    let (_, points, _) = starts_and_proposals(&prototypes, 120, 94);
    let z = backend.from_f32(&points, &[120, 128]).unwrap();
    let barrier = VmfKdeBarrier::default();
    let first = barrier.class_log_density_bounds(&z, &bank, false).unwrap();
    let second = barrier.class_log_density_bounds(&z, &bank, true).unwrap();
    let mut widest_first = 0.0f64;
    for (i, point) in rows_f64(&points, 128).iter().enumerate() {
        for (c, class) in members.iter().enumerate() {
            // log of (1/n) sum_i exp(kappa z.x_i), by logsumexp in f64.
            let logits: Vec<f64> = class
                .iter()
                .map(|x| barrier.kappa * x.iter().zip(point).map(|(a, b)| a * b).sum::<f64>())
                .collect();
            let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exact = top + (logits.iter().map(|l| (l - top).exp()).sum::<f64>() / class.len() as f64).ln();
            for (tier, bounds) in [("first", &first), ("second", &second)] {
                let (lo, hi) = bounds[i][c];
                assert!(
                    lo <= exact && exact <= hi,
                    "{tier} tier, point {i}, class {c}: {exact} outside [{lo}, {hi}]"
                );
            }
            let (lo, hi) = second[i][c];
            assert!(hi - lo <= first[i][c].1 - first[i][c].0 + 1e-12, "the second tier is tighter");
            widest_first = widest_first.max(first[i][c].1 - first[i][c].0);
        }
    }
    assert!(widest_first > 0.0, "bounds are intervals");
}

#[test]
fn screened_verdicts_equal_exact_at_benchmark_scale() {
    for_each_backend(screened_verdicts_equal_exact_at_benchmark_scale_on);
}

fn screened_verdicts_equal_exact_at_benchmark_scale_on(backend: Arc<dyn Backend>) {
    let bank = benchmark_bank(&backend);
    let prototypes = bank.prototypes().unwrap().to_rows_f32().unwrap();
    let (starts, points, start_of) = starts_and_proposals(&prototypes, 400, 95);
    let starts = backend.from_f32(&starts, &[20, 128]).unwrap();
    let candidates = backend.from_f32(&points, &[400, 128]).unwrap();
    let exact = VmfKdeBarrier { screen: false, ..VmfKdeBarrier::default() };
    let screened = VmfKdeBarrier::default();

    // Thresholds from the starts: exact ones, and the screened barrier's bounds.
    let mut exact_thresholds = exact.thresholds(&starts, &bank).unwrap().unwrap();
    let mut bounded = screened.thresholds(&starts, &bank).unwrap().unwrap();
    assert_eq!(bounded.exact_count(), 0, "screened thresholds start as bounds");
    let want = exact.admits(&candidates, &start_of, &mut exact_thresholds, &bank).unwrap();
    let got = screened.admits(&candidates, &start_of, &mut bounded, &bank).unwrap();
    let want_mask = want.mask.to_vec_f32().unwrap();
    assert_eq!(got.mask.to_vec_f32().unwrap(), want_mask);
    assert!(want_mask.contains(&0.0) && want_mask.contains(&1.0), "both verdicts occur");
    assert!(got.exact_evaluations < 400, "{} exact", got.exact_evaluations);

    // Thresholds placed around each candidate's exact value, down to inside the margin.
    let energy = exact.exact_energy(&candidates, &bank).unwrap().to_vec_f32().unwrap();
    let offsets = [-0.3f32, -0.01, -1e-3, -1e-5, 1e-5, 1e-3, 0.01, 0.3];
    let values: Vec<f32> = energy.iter().enumerate().map(|(i, e)| e + offsets[i % offsets.len()]).collect();
    let own: Vec<usize> = (0..400).collect();
    let fresh = || Thresholds::exact(candidates.clone(), &values).unwrap();
    let want = exact.admits(&candidates, &own, &mut fresh(), &bank).unwrap().mask.to_vec_f32().unwrap();
    let got = screened.admits(&candidates, &own, &mut fresh(), &bank).unwrap().mask.to_vec_f32().unwrap();
    assert_eq!(got, want);
}
