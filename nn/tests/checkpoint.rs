//! Safetensors checkpoints: round trips, and one-line errors naming the tensors at fault.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::backends;
use hamos_api::{rng_from_seed, Forward};
use hamos_nn::backbones::{Mlp, ResNet18Cifar, SmallCnn};
use hamos_nn::checkpoint::{self, HostTensors};
use hamos_nn::Classifier;

fn small_cnn() -> Classifier {
    Classifier::new(Arc::new(SmallCnn::default()), 10, "").unwrap()
}

#[test]
fn round_trip_restores_every_tensor_and_the_outputs() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/model.safetensors");
        let net = small_cnn();
        let saved = net.init_store(backend.clone(), &mut rng_from_seed(1)).unwrap();
        checkpoint::save(&saved, &path).unwrap();
        let mut loaded = net.init_store(backend.clone(), &mut rng_from_seed(2)).unwrap();
        checkpoint::load(&mut loaded, &path).unwrap();
        for (name, param) in saved.iter() {
            let other = loaded.param(name).unwrap();
            assert_eq!(other.kind, param.kind, "{name}");
            match param.tensor.dtype() {
                hamos_api::DType::F32 => {
                    assert_eq!(
                        other.tensor.to_vec_f32().unwrap(),
                        param.tensor.to_vec_f32().unwrap(),
                        "{name}"
                    )
                }
                hamos_api::DType::I64 => {
                    assert_eq!(
                        other.tensor.to_vec_i64().unwrap(),
                        param.tensor.to_vec_i64().unwrap(),
                        "{name}"
                    )
                }
            }
        }
        let images = backend.randn(&[2, 1, 28, 28], 0.0, 1.0, &mut rng_from_seed(3)).unwrap();
        let a = net.logits(&Forward::eval(&saved), &images).unwrap().to_vec_f32().unwrap();
        let b = net.logits(&Forward::eval(&loaded), &images).unwrap().to_vec_f32().unwrap();
        assert_eq!(a, b);
        // No temporary file is left beside the checkpoint.
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }
}

#[test]
fn mismatches_are_one_line_errors_naming_each_tensor() {
    let backend = backends().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let saved = small_cnn().init_store(backend.clone(), &mut rng_from_seed(1)).unwrap();

    // Another architecture.
    checkpoint::save(&saved, &path).unwrap();
    let mlp = Classifier::new(Arc::new(Mlp::default()), 10, "").unwrap();
    let mut other = mlp.init_store(backend.clone(), &mut rng_from_seed(1)).unwrap();
    let err = checkpoint::load(&mut other, &path).unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(
        err.contains("missing `layers.0.weight` [256, 784]") && err.contains("unexpected `bn1.bias`"),
        "{err}"
    );

    // A missing tensor and a wrong shape.
    let mut tensors: Vec<(&str, &hamos_api::Tensor)> =
        saved.iter().filter(|(n, _)| *n != "conv2.weight").map(|(n, p)| (n, &p.tensor)).collect();
    let wrong = backend.zeros(&[10, 64]).unwrap();
    for entry in tensors.iter_mut().filter(|(n, _)| *n == "fc.weight") {
        entry.1 = &wrong;
    }
    let bytes =
        HostTensors::from_tensors(tensors).unwrap().serialize(None::<HashMap<String, String>>).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let mut params = small_cnn().init_store(backend.clone(), &mut rng_from_seed(1)).unwrap();
    let err = checkpoint::load(&mut params, &path).unwrap_err().to_string();
    assert!(err.contains("missing `conv2.weight` [64, 32, 3, 3]"), "{err}");
    assert!(
        err.contains("`fc.weight` is F32 [10, 64] in the file, the network expects F32 [10, 128]"),
        "{err}"
    );

    // Optional tensors may be absent; a truncated file is an error naming it.
    let kept: Vec<_> = saved
        .iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
        .map(|(n, p)| (n, &p.tensor))
        .collect();
    std::fs::write(&path, HostTensors::from_tensors(kept).unwrap().serialize(None).unwrap()).unwrap();
    checkpoint::load(&mut params, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = checkpoint::load(&mut params, &path).unwrap_err().to_string();
    assert!(err.contains("not a safetensors file") && err.contains("model.safetensors"), "{err}");
}

#[test]
fn resnet_names_are_openood_names() {
    let backend = backends().remove(0);
    let net = Classifier::new(Arc::new(ResNet18Cifar::default()), 10, "").unwrap();
    let params = net.init_store(backend, &mut rng_from_seed(0)).unwrap();
    let names = params.names();
    assert_eq!(names.len(), 122);
    assert_eq!(
        &names[..6],
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.num_batches_tracked"
        ]
    );
    assert!(names.iter().any(|n| n == "layer2.0.shortcut.0.weight"));
    assert!(names.iter().any(|n| n == "layer4.1.bn2.running_var"));
    assert!(!names.iter().any(|n| n.starts_with("layer1.0.shortcut")));
    assert_eq!(names[names.len() - 2..], ["fc.weight", "fc.bias"]);
    assert_eq!(params.trainable_count(), 11_173_962);
}

#[test]
fn the_same_tensors_and_metadata_give_the_same_bytes() {
    let backend = backends().into_iter().next().unwrap();
    let params = small_cnn().init_store(backend.clone(), &mut rng_from_seed(7)).unwrap();
    let named: Vec<(&str, &hamos_api::Tensor)> = params.iter().map(|(n, p)| (n, &p.tensor)).collect();
    let host = HostTensors::from_tensors(named).unwrap();
    let entries: Vec<(String, String)> = (0..24).map(|i| (format!("key{i}"), format!("value {i}"))).collect();
    // Each HashMap has its own random hash order.
    let write = || host.serialize(Some(entries.iter().cloned().collect::<HashMap<_, _>>())).unwrap();
    let first = write();
    for _ in 0..8 {
        assert!(write() == first, "the bytes changed with the metadata map's hash order");
    }
    // Still a safetensors file with every tensor and the metadata.
    let file = safetensors::SafeTensors::deserialize(&first).unwrap();
    assert_eq!(file.len(), params.iter().count());
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&first).unwrap();
    let read = metadata.metadata().clone().unwrap();
    assert_eq!(read.len(), 24);
    assert_eq!(read["key7"], "value 7");
}
