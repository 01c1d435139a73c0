//! Chain starts (Algorithm 1, lines 1-4) against a brute-force reference: each class pairs with
//! its `N_adj` nearest classes by cosine, each chain starts at the normalized midpoint.
#![allow(clippy::unwrap_used)] // a failure there is a test failure

mod common;

use std::sync::Arc;

use common::for_each_backend;
use hamos_api::Backend;
use hamos_samplers::chains::chain_starts;

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

/// All `(c, j)` pairs ranked by brute force: for each `c`, every other class sorted by cosine,
/// most similar first (ties by index), the first `min(n_adj, C - 1)` kept.
fn reference_pairs(prototypes: &[Vec<f64>], n_adj: usize) -> Vec<(usize, usize)> {
    let classes = prototypes.len();
    let mut pairs = Vec::new();
    for c in 0..classes {
        let mut ranked: Vec<usize> = (0..classes).filter(|&j| j != c).collect();
        ranked.sort_by(|&a, &b| {
            cosine(&prototypes[c], &prototypes[b])
                .total_cmp(&cosine(&prototypes[c], &prototypes[a]))
                .then(a.cmp(&b))
        });
        pairs.extend(ranked.into_iter().take(n_adj.min(classes - 1)).map(|j| (c, j)));
    }
    pairs
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

#[test]
fn starts_pair_the_nearest_classes_at_their_midpoints() {
    for_each_backend(starts_pair_the_nearest_classes_at_their_midpoints_on);
}

fn starts_pair_the_nearest_classes_at_their_midpoints_on(backend: Arc<dyn Backend>) {
    let mut rng = hamos_api::rng_from_seed(81);
    for (classes, dim) in [(7usize, 6usize), (12, 4), (3, 16)] {
        // Prototypes of random lengths: the ranking and midpoints use their directions.
        let raw = hamos_api::backend::randn_host(classes * dim, 0.0, 1.0, &mut rng);
        let prototypes: Vec<Vec<f64>> =
            raw.chunks(dim).map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect();
        let tensor = backend.from_f32(&raw, &[classes, dim]).unwrap();
        for n_adj in [1, 2, classes - 1, classes, classes + 5] {
            let starts = chain_starts(&tensor, n_adj).unwrap();
            let want = reference_pairs(&prototypes, n_adj);
            assert_eq!(starts.pairs, want, "C = {classes}, n_adj = {n_adj}");
            assert_eq!(starts.positions.dims(), vec![want.len(), dim]);
            let clipped = starts.notes.iter().any(|n| n.contains("clipped"));
            assert_eq!(clipped, n_adj >= classes, "C = {classes}, n_adj = {n_adj}: {:?}", starts.notes);
            for (row, &(c, j)) in starts.positions.to_rows_f32().unwrap().iter().zip(&want) {
                let (a, b) = (unit(&prototypes[c]), unit(&prototypes[j]));
                let mid = unit(&a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>());
                for (got, want) in row.iter().zip(&mid) {
                    assert!((f64::from(*got) - want).abs() < 1e-6, "start ({c}, {j}): {row:?} vs {mid:?}");
                }
            }
        }
    }
}

#[test]
fn antipodal_prototypes_start_on_the_circle_between_them() {
    for_each_backend(antipodal_prototypes_start_on_the_circle_between_them_on);
}

fn antipodal_prototypes_start_on_the_circle_between_them_on(backend: Arc<dyn Backend>) {
    // Class 1 is class 0 reversed; class 2 is elsewhere. With n_adj = 2 every pair is used.
    let mu0 = [0.5f32, -0.5, 0.5, 0.5];
    let mu1 = mu0.map(|x| -x);
    let mu2 = [0.1f32, 0.9, 0.3, -0.2];
    let rows: Vec<f32> = [mu0, mu1, mu2].concat();
    let tensor = backend.from_f32(&rows, &[3, 4]).unwrap();
    let starts = chain_starts(&tensor, 2).unwrap();
    let prototypes: Vec<Vec<f64>> =
        rows.chunks(4).map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect();
    assert_eq!(starts.pairs, reference_pairs(&prototypes, 2));
    let positions = starts.positions.to_rows_f32().unwrap();
    for (row, &(c, j)) in positions.iter().zip(&starts.pairs) {
        let row: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6 && row.iter().all(|x| x.is_finite()), "({c}, {j}): {row:?}");
        if (c, j) == (0, 1) || (c, j) == (1, 0) {
            // Every point orthogonal to both is a midpoint; the start must be one of them.
            assert!(cosine(&row, &prototypes[0]).abs() < 1e-6, "({c}, {j}) not orthogonal: {row:?}");
        } else {
            let mid: Vec<f64> =
                unit(&prototypes[c]).iter().zip(unit(&prototypes[j])).map(|(a, b)| a + b).collect();
            assert!(cosine(&row, &mid) > 1.0 - 1e-9, "({c}, {j}): {row:?}");
        }
    }
    let antipodal = starts.notes.iter().filter(|n| n.contains("antipodal")).count();
    assert_eq!(antipodal, 2, "{:?}", starts.notes);
    assert!(chain_starts(&backend.from_f32(&mu0, &[1, 4]).unwrap(), 1).is_err(), "one class is an error");
}
