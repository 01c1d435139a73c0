//! Backends every network test runs on: candle, and tch (CPU) with the `tch-tests` feature.

#![allow(dead_code)]

use std::sync::Arc;

use hamos_api::{Backend, Tensor};

/// Every backend compiled into this test.
pub fn backends() -> Vec<Arc<dyn Backend>> {
    #[allow(unused_mut)]
    let mut all: Vec<Arc<dyn Backend>> = vec![Arc::new(hamos_candle::CandleBackend::cpu())];
    #[cfg(feature = "tch-tests")]
    {
        hamos_tch::set_threads(1);
        all.push(Arc::new(hamos_tch::TchBackend::cpu()));
    }
    all
}

/// Largest absolute difference between a tensor and host values.
pub fn max_abs_diff(got: &Tensor, want: &[f64]) -> f64 {
    let got = got.to_vec_f32().expect("host copy");
    assert_eq!(got.len(), want.len(), "lengths differ");
    got.iter().zip(want).map(|(g, w)| (f64::from(*g) - w).abs()).fold(0.0, f64::max)
}

/// Deterministic pseudo-random values in [-1, 1) from a seed (a tiny LCG, independent of the
/// crate's RNG so that references do not share code with the code under test).
pub fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
