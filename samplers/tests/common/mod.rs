//! Shared fixtures for the sampler tests: clustered unit embeddings on the candle CPU backend.
#![allow(dead_code)] // each test file uses a different part of the fixtures

use std::sync::Arc;

use hamos_api::{Backend, ClassBank, Result};

/// The candle CPU backend.
pub fn candle() -> Arc<dyn Backend> {
    Arc::new(hamos_candle::CandleBackend::cpu())
}

/// The backends every property runs on: candle, and tch (CPU) with the `tch-tests` feature.
pub fn backends() -> Vec<Arc<dyn Backend>> {
    #[allow(unused_mut)]
    let mut all = vec![candle()];
    #[cfg(feature = "tch-tests")]
    {
        // Two shared cores: OpenMP spinning across parallel tests collapses throughput.
        hamos_tch::set_threads(1);
        all.push(Arc::new(hamos_tch::TchBackend::cpu()));
    }
    all
}

/// Runs `test` once per backend of [`backends`], naming the backend on stderr (shown when it
/// fails).
pub fn for_each_backend(test: impl Fn(Arc<dyn Backend>)) {
    for backend in backends() {
        eprintln!("on backend {} {:?}", backend.name(), backend.device());
        test(backend);
    }
}

/// `classes` tight clusters of `per_class` unit vectors in `dim` dimensions around random
/// centres, noise scale `spread`.
pub fn clustered_bank(
    backend: &Arc<dyn Backend>,
    classes: usize,
    per_class: usize,
    dim: usize,
    spread: f32,
    seed: u64,
) -> Result<ClassBank> {
    let mut rng = hamos_api::rng_from_seed(seed);
    let centres = hamos_api::backend::randn_host(classes * dim, 0.0, 1.0, &mut rng);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for class in 0..classes {
        let centre = unit(&centres[class * dim..(class + 1) * dim]);
        for _ in 0..per_class {
            let noise = hamos_api::backend::randn_host(dim, 0.0, spread, &mut rng);
            let point: Vec<f32> = centre.iter().zip(&noise).map(|(c, n)| c + n).collect();
            rows.extend(unit(&point));
            labels.push(class);
        }
    }
    ClassBank::from_rows(backend, &rows, dim, &labels, classes, per_class)
}

/// `v / |v|`.
pub fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}
