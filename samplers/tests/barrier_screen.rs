//! The vMF barrier's moment screening reaches the same verdicts as the exact density.

mod common;

use std::sync::Arc;

use common::{clustered_bank, for_each_backend, unit};
use hamos_api::Backend;
use hamos_api::{IdBarrier, Thresholds};
use hamos_samplers::barrier::vmf_kde::VmfKdeBarrier;

#[test]
fn screened_verdicts_equal_exact_verdicts() {
    for_each_backend(screened_verdicts_equal_exact_verdicts_on);
}

fn screened_verdicts_equal_exact_verdicts_on(backend: Arc<dyn Backend>) {
    let (classes, per_class, dim) = (12, 200, 16);
    let bank = clustered_bank(&backend, classes, per_class, dim, 0.3, 31).expect("bank");
    let prototypes = bank.prototypes().expect("prototypes").to_rows_f32().expect("rows");
    let mut rng = hamos_api::rng_from_seed(32);
    // Points near clusters, between pairs of them, and anywhere.
    let mut points = Vec::new();
    for i in 0..300 {
        let noise = hamos_api::backend::randn_host(dim, 0.0, 1.0, &mut rng);
        let (a, b) = (&prototypes[i % classes], &prototypes[(i * 7 + 1) % classes]);
        let point: Vec<f32> = match i % 3 {
            0 => a.iter().zip(&noise).map(|(p, n)| p + 0.2 * n).collect(),
            1 => a.iter().zip(b).zip(&noise).map(|((p, q), n)| p + q + 0.1 * n).collect(),
            _ => noise,
        };
        points.extend(unit(&point));
    }
    let candidates = backend.from_f32(&points, &[300, dim]).expect("candidates");
    let exact = VmfKdeBarrier { screen: false, ..VmfKdeBarrier::default() };
    let screened = VmfKdeBarrier::default();
    let energy = exact.exact_energy(&candidates, &bank).expect("energy").to_vec_f32().expect("host");
    // Thresholds from far below to far above each exact value, some within the margin.
    let offsets = [-0.5f32, -0.05, -0.002, -1e-4, 1e-4, 0.002, 0.05, 0.5];
    let thresholds: Vec<f32> =
        energy.iter().enumerate().map(|(i, e)| e + offsets[i % offsets.len()]).collect();
    let starts: Vec<usize> = (0..300).collect();
    let exact_thresholds = || Thresholds::exact(candidates.clone(), &thresholds).expect("thresholds");

    let want = exact.admits(&candidates, &starts, &mut exact_thresholds(), &bank).expect("exact");
    let got = screened.admits(&candidates, &starts, &mut exact_thresholds(), &bank).expect("screened");
    assert_eq!(got.mask.to_vec_f32().expect("host"), want.mask.to_vec_f32().expect("host"));
    assert_eq!(want.exact_evaluations, 300);
    assert!(
        got.exact_evaluations > 0 && got.exact_evaluations < 300,
        "the bounds should decide some proposals and leave the close ones: {} exact",
        got.exact_evaluations
    );
}

#[test]
fn screening_is_skipped_where_it_does_not_pay() {
    for_each_backend(screening_is_skipped_where_it_does_not_pay_on);
}

/// Fewer rows per class than dimensions: the moments would cost more than the exact density.
fn screening_is_skipped_where_it_does_not_pay_on(backend: Arc<dyn Backend>) {
    let bank = clustered_bank(&backend, 3, 12, 16, 0.3, 33).expect("bank");
    let candidates = backend.from_f32(&unit(&[1.0; 16]), &[1, 16]).expect("candidate");
    let mut thresholds = Thresholds::exact(candidates.clone(), &[0.0]).expect("thresholds");
    let admission =
        VmfKdeBarrier::default().admits(&candidates, &[0], &mut thresholds, &bank).expect("admits");
    assert_eq!(admission.exact_evaluations, 1);
}

#[test]
fn thresholds_known_by_bounds_give_the_exact_verdicts() {
    for_each_backend(thresholds_known_by_bounds_give_the_exact_verdicts_on);
}

/// Chain starts between class pairs, proposals scattered around them: the screened barrier
/// keeps its thresholds as bounds, makes them exact only where a verdict needs it, and agrees
/// with the exact barrier on every proposal.
fn thresholds_known_by_bounds_give_the_exact_verdicts_on(backend: Arc<dyn Backend>) {
    let (classes, per_class, dim) = (10, 300, 16);
    let bank = clustered_bank(&backend, classes, per_class, dim, 0.3, 35).expect("bank");
    let prototypes = bank.prototypes().expect("prototypes").to_rows_f32().expect("rows");
    let mut rng = hamos_api::rng_from_seed(36);
    let start_rows: Vec<f32> = (0..20)
        .flat_map(|i| {
            let (a, b) = (&prototypes[i % classes], &prototypes[(i * 3 + 1) % classes]);
            unit(&a.iter().zip(b).map(|(p, q)| p + q).collect::<Vec<_>>())
        })
        .collect();
    let starts = backend.from_f32(&start_rows, &[20, dim]).expect("starts");
    let (mut points, mut start_of) = (Vec::new(), Vec::new());
    for i in 0..400 {
        let start = &start_rows[(i % 20) * dim..(i % 20 + 1) * dim];
        let spread = [0.05f32, 0.2, 0.6][i % 3];
        let noise = hamos_api::backend::randn_host(dim, 0.0, 1.0, &mut rng);
        points.extend(unit(&start.iter().zip(&noise).map(|(s, n)| s + spread * n).collect::<Vec<_>>()));
        start_of.push(i % 20);
    }
    let candidates = backend.from_f32(&points, &[400, dim]).expect("candidates");
    let exact = VmfKdeBarrier { screen: false, ..VmfKdeBarrier::default() };
    let screened = VmfKdeBarrier::default();
    let mut exact_thresholds = exact.thresholds(&starts, &bank).expect("exact").expect("thresholds");
    let mut bounded = screened.thresholds(&starts, &bank).expect("screened").expect("thresholds");
    assert_eq!(exact_thresholds.exact_count(), 20);
    assert_eq!(bounded.exact_count(), 0, "screened thresholds start as bounds");
    for start in 0..20 {
        let (lo, hi) = bounded.bounds(start);
        let t = f64::from(exact_thresholds.exact_value(start).expect("exact"));
        assert!(lo - 1e-4 <= t && t <= hi + 1e-4, "start {start}: {t} outside [{lo}, {hi}]");
    }
    let want = exact.admits(&candidates, &start_of, &mut exact_thresholds, &bank).expect("exact");
    let got = screened.admits(&candidates, &start_of, &mut bounded, &bank).expect("screened");
    let (want_mask, got_mask) = (want.mask.to_vec_f32().expect("host"), got.mask.to_vec_f32().expect("host"));
    assert_eq!(got_mask, want_mask);
    assert!(want_mask.contains(&0.0) && want_mask.contains(&1.0), "both verdicts occur: {want_mask:?}");
    assert_eq!(got.refined_starts, bounded.exact_count());
    assert!(got.exact_evaluations < 400, "bounds decide some proposals: {} exact", got.exact_evaluations);
}

#[test]
fn class_moments_match_f64() {
    for_each_backend(class_moments_match_f64_on);
}

/// Means, covariances, radii and top-eigenvalue bounds against f64 sums,
/// with classes of different fill (padding rows must not count).
fn class_moments_match_f64_on(backend: Arc<dyn Backend>) {
    let (classes, capacity, dim) = (3, 40, 7);
    let mut rng = hamos_api::rng_from_seed(37);
    let fill = [40usize, 25, 3];
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for (class, &n) in fill.iter().enumerate() {
        for _ in 0..n {
            let noise = hamos_api::backend::randn_host(dim, 0.0, 1.0, &mut rng);
            rows.extend(unit(&noise.iter().map(|x| x + class as f32).collect::<Vec<_>>()));
            labels.push(class);
        }
    }
    let bank =
        hamos_api::ClassBank::from_rows(&backend, &rows, dim, &labels, classes, capacity).expect("bank");
    let moments = bank.moments().expect("moments");
    let means = moments.means.to_vec_f32().expect("means");
    let covariance = moments.covariance.to_vec_f32().expect("covariance");
    let probes = hamos_api::backend::randn_host(4 * dim, 0.0, 1.0, &mut rng);
    let forms = moments
        .quadratic_forms(&backend.from_f32(&probes, &[4, dim]).expect("probes"))
        .expect("forms")
        .to_vec_f32()
        .expect("forms");
    assert_eq!(moments.covariance.dims(), vec![dim, classes * dim]);
    let mut offset = 0;
    for (class, &n) in fill.iter().enumerate() {
        let members: Vec<Vec<f64>> = (offset..offset + n)
            .map(|r| rows[r * dim..(r + 1) * dim].iter().map(|&x| f64::from(x)).collect())
            .collect();
        offset += n;
        let mean: Vec<f64> = (0..dim).map(|a| members.iter().map(|x| x[a]).sum::<f64>() / n as f64).collect();
        let cov = |a: usize, b: usize| {
            members.iter().map(|x| (x[a] - mean[a]) * (x[b] - mean[b])).sum::<f64>() / n as f64
        };
        for a in 0..dim {
            assert!((f64::from(means[class * dim + a]) - mean[a]).abs() < 1e-5, "mean {class} {a}");
        }
        let mut top = 0.0f64;
        for a in 0..dim {
            for b in 0..dim {
                let got = f64::from(covariance[(a * classes + class) * dim + b]);
                assert!(
                    (got - cov(a, b)).abs() < 1e-5,
                    "covariance {class} ({a}, {b}): {got} vs {}",
                    cov(a, b)
                );
            }
            top = top.max(cov(a, a));
        }
        // The bound is at least the largest variance along any axis (a lower bound on the
        // top eigenvalue) and at most the trace.
        let trace: f64 = (0..dim).map(|a| cov(a, a)).sum();
        let bound = f64::from(moments.variance_bounds[class]);
        assert!(bound >= top - 1e-6 && bound <= trace * (1.0 + 1e-3) + 1e-6, "bound {class}: {bound}");
        let radius = members
            .iter()
            .map(|x| x.iter().zip(&mean).map(|(v, m)| (v - m).powi(2)).sum::<f64>().sqrt())
            .fold(0.0, f64::max);
        let got = f64::from(moments.radii[class]);
        assert!(got >= radius && got < radius + 1e-2, "radius {class}: {got} vs {radius}");
        // z^T S_c z = mean_i (z.(x_i - m_c))^2 on random rows z.
        for (row, z) in probes.chunks_exact(dim).enumerate() {
            let want = members
                .iter()
                .map(|x| {
                    x.iter().zip(&mean).zip(z).map(|((v, m), &q)| (v - m) * f64::from(q)).sum::<f64>().powi(2)
                })
                .sum::<f64>()
                / n as f64;
            let got = f64::from(forms[row * classes + class]);
            assert!((got - want).abs() < 1e-5 * (1.0 + want), "form {row} {class}: {got} vs {want}");
        }
    }
}
