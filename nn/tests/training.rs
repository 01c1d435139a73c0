//! `small_cnn` trained for a few steps from the same weights and batch on every backend: the
//! loss falls, and the backends' losses agree.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use std::sync::Arc;

use common::{backends, values};
use hamos_api::{rng_from_seed, Backend, Forward};
use hamos_nn::backbones::{Mlp, SmallCnn};
use hamos_nn::optim::{Sgd, SgdConfig};
use hamos_nn::{checkpoint, cross_entropy_step, Classifier, DualHeadNet};

const BATCH: usize = 16;

/// Images whose class shows as a brighter horizontal band (row block `label`), plus noise.
fn batch(backend: &Arc<dyn Backend>) -> (hamos_api::Tensor, hamos_api::Tensor) {
    let noise = values(7, BATCH * 28 * 28);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 4).collect();
    let mut pixels = vec![0f32; BATCH * 28 * 28];
    for (n, &label) in labels.iter().enumerate() {
        for row in 0..28 {
            for col in 0..28 {
                let i = (n * 28 + row) * 28 + col;
                let band = if row / 7 == label as usize { 1.0 } else { 0.0 };
                pixels[i] = band + 0.3 * noise[i];
            }
        }
    }
    (backend.from_f32(&pixels, &[BATCH, 1, 28, 28]).unwrap(), backend.from_i64(&labels, &[BATCH]).unwrap())
}

fn train_losses(backend: &Arc<dyn Backend>, steps: usize) -> Vec<f32> {
    let net = Classifier::new(Arc::new(SmallCnn::default()), 4, "").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The same initial weights on every backend: drawn on the host from one seed, saved and
    // loaded through safetensors.
    let init = net.init_store(Arc::new(hamos_candle::CandleBackend::cpu()), &mut rng_from_seed(3)).unwrap();
    checkpoint::save(&init, &dir.path().join("init.safetensors")).unwrap();
    let mut params = net.init_store(backend.clone(), &mut rng_from_seed(99)).unwrap();
    checkpoint::load(&mut params, &dir.path().join("init.safetensors")).unwrap();
    let (images, labels) = batch(backend);
    let mut sgd =
        Sgd::new(SgdConfig { learning_rate: 0.05, momentum: 0.9, weight_decay: 1e-4, nesterov: false })
            .unwrap();
    (0..steps)
        .map(|_| cross_entropy_step(&net, &mut params, &mut sgd, &images, &labels, 0.05).unwrap())
        .collect()
}

#[test]
fn small_cnn_loss_falls_and_backends_agree() {
    let runs: Vec<(String, Vec<f32>)> =
        backends().iter().map(|b| (b.name().to_string(), train_losses(b, 8))).collect();
    for (name, losses) in &runs {
        assert!(losses[0] > 1.0, "{name}: initial loss {losses:?} should be near ln 4");
        assert!(losses[7] < 0.7 * losses[0], "{name}: loss did not fall: {losses:?}");
    }
    if let [(a, first), (b, second), ..] = runs.as_slice() {
        for step in 0..4 {
            let diff = (first[step] - second[step]).abs();
            assert!(diff < 1e-3, "step {step}: {a} {} vs {b} {} (diff {diff})", first[step], second[step]);
        }
    }
}

#[test]
fn dual_head_network_outputs_and_names() {
    for backend in backends() {
        let net = DualHeadNet::new(Arc::new(Mlp::default()), 10, 128).unwrap();
        let params = net.init_store(backend.clone(), &mut rng_from_seed(1)).unwrap();
        for name in
            ["backbone.layers.0.weight", "backbone.fc.weight", "head.0.bias", "head.2.weight", "prototypes"]
        {
            assert!(params.get(name).is_ok(), "missing {name}");
        }
        let images = backend.randn(&[5, 1, 28, 28], 0.0, 1.0, &mut rng_from_seed(2)).unwrap();
        let out = net.forward(&Forward::eval(&params), &images).unwrap();
        assert_eq!(out.features.dims(), vec![5, 256]);
        assert_eq!(out.logits.dims(), vec![5, 10]);
        assert_eq!(out.embeddings.dims(), vec![5, 128]);
        let norms = out.embeddings.norm(1, false).unwrap().to_vec_f32().unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
        let wrong = backend.zeros(&[2, 3, 32, 32]).unwrap();
        let err = net.forward(&Forward::eval(&params), &wrong).unwrap_err().to_string();
        assert!(err.contains("`mlp` expects images [n, 1, 28, 28]"), "{err}");
    }
}
