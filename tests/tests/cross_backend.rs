//! A tensor of one backend handed to another is a clear error, not a panic.
#![cfg(feature = "tch")]
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::sync::Arc;

#[test]
fn mixing_candle_and_tch_tensors_is_an_error() {
    hamos_tch::set_threads(1);
    let candle: Arc<dyn hamos_api::Backend> = Arc::new(hamos_candle::CandleBackend::cpu());
    let tch = hamos_api::open_backend("tch", "cpu").unwrap();
    hamos_conformance::cross_backend_mismatch(&candle, &tch).unwrap();
    hamos_conformance::cross_backend_mismatch(&tch, &candle).unwrap();
}

/// Clustered unit embeddings drawn on the host, identical for both backends.
fn clustered(classes: usize, per_class: usize, dim: usize) -> (Vec<f32>, Vec<usize>) {
    let mut rng = hamos_api::rng_from_seed(31);
    let centres = hamos_api::backend::randn_host(classes * dim, 0.0, 1.0, &mut rng);
    let noise = hamos_api::backend::randn_host(classes * per_class * dim, 0.0, 0.25, &mut rng);
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    for (i, chunk) in noise.chunks(dim).enumerate() {
        let class = i / per_class;
        let v: Vec<f32> =
            centres[class * dim..(class + 1) * dim].iter().zip(chunk).map(|(c, n)| c + n).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        rows.extend(v.iter().map(|x| x / norm));
        labels.push(class);
    }
    (rows, labels)
}

#[test]
fn candle_and_tch_synthesize_the_same_outliers() {
    use hamos_api::{ClassBank, Sampler, SynthesisInput};
    use hamos_samplers::barrier::vmf_kde::VmfKdeBarrier;
    use hamos_samplers::energy::knn::KnnEnergy;

    hamos_tch::set_threads(1);
    let (rows, labels) = clustered(5, 40, 16);
    let run = |backend: Arc<dyn hamos_api::Backend>, sampler: &dyn Sampler| {
        let bank = ClassBank::from_rows(&backend, &rows, 16, &labels, 5, 40).unwrap();
        let prototypes = bank.prototypes().unwrap();
        let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
        let mut rng = hamos_api::rng_from_seed(77);
        let out =
            sampler.synthesize(&input, &KnnEnergy { k: 10 }, &VmfKdeBarrier::default(), &mut rng).unwrap();
        (out.outliers.to_vec_f32().unwrap(), out.tags)
    };
    for name in ["hmc", "mala", "mmala", "rmhmc", "random_walk", "vos", "npos"] {
        let sampler: Box<dyn Sampler> = toml::from_str(&format!("kind = \"{name}\"")).unwrap();
        let (candle, candle_tags) = run(Arc::new(hamos_candle::CandleBackend::cpu()), sampler.as_ref());
        let (tch, tch_tags) = run(hamos_api::open_backend("tch", "cpu").unwrap(), sampler.as_ref());
        assert_eq!(candle_tags, tch_tags, "{name}");
        // Every row (one chain after one round) agrees to 1e-4: the randomness is drawn on the
        // host, and the discrete choices that float rounding could flip (the k-th neighbour)
        // are settled in f64 on both backends (hamos_api::select_kth).
        let worst = candle.iter().zip(&tch).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        eprintln!("{name}: largest difference {worst:e}");
        assert!(worst < 1e-4, "{name}: candle and tch differ by {worst:e}");
    }
}
