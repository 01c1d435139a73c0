//! The vMF barrier's moment screening reaches the same verdicts as the exact density.

mod common;

use std::sync::Arc;

use common::{clustered_bank, for_each_backend, unit};
use hamos_api::Backend;
use hamos_api::IdBarrier;
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
    let thresholds = backend.from_f32(&thresholds, &[300]).expect("thresholds");

    let want = exact.admits(&candidates, Some(&thresholds), &bank).expect("exact").expect("verdicts");
    let got = screened.admits(&candidates, Some(&thresholds), &bank).expect("screened").expect("verdicts");
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

fn screening_is_skipped_where_it_does_not_pay_on(backend: Arc<dyn Backend>) {
    let bank = clustered_bank(&backend, 3, 20, 16, 0.3, 33).expect("bank");
    let candidates = backend.from_f32(&unit(&[1.0; 16]), &[1, 16]).expect("candidate");
    let thresholds = backend.from_f32(&[0.0], &[1]).expect("thresholds");
    let admission = VmfKdeBarrier::default()
        .admits(&candidates, Some(&thresholds), &bank)
        .expect("admits")
        .expect("verdict");
    assert_eq!(admission.exact_evaluations, 1);
}
