//! ResNet-18 under OpenOOD's PyTorch names, loaded from a safetensors file and run in eval
//! mode, against logits PyTorch computed (`tests/fixtures/resnet18_cifar.json`, made by
//! `scripts/make-resnet-fixture.sh`). The weights follow a formula both sides compute, so the
//! fixture needs no 45 MB weight file.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use std::sync::Arc;

use common::backends;
use hamos_api::{rng_from_seed, DType, Forward, Tensor};
use hamos_nn::backbones::ResNet18Cifar;
use hamos_nn::checkpoint::{self, HostTensors};
use hamos_nn::Classifier;
use serde_json::Value;

fn fixture() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/resnet18_cifar.json"))
            .expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// The fixture's weight formula for entry `j` of the state dict, named `name`, shape `dims`.
fn formula(name: &str, j: usize, dims: &[usize]) -> Vec<f32> {
    let count: usize = dims.iter().product();
    let fan_in: usize = dims.iter().skip(1).product();
    (0..count)
        .map(|i| {
            let s = (0.37 * i as f64 + 1.3 * j as f64).sin();
            let value = if dims.len() >= 2 {
                s * (3.0 / fan_in as f64).sqrt()
            } else if name.ends_with("running_mean") {
                0.05 * s
            } else if name.ends_with("running_var") {
                1.0 + 0.25 * (1.0 + s)
            } else if name.ends_with("bias") {
                0.1 * s
            } else {
                1.0 + 0.1 * s
            };
            value as f32
        })
        .collect()
}

fn dims_of(entry: &Value) -> Vec<usize> {
    entry["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect()
}

#[test]
fn resnet18_logits_match_pytorch() {
    let fixture = fixture();
    let entries = fixture["state_dict"].as_array().expect("state_dict");
    for backend in backends() {
        let net = Classifier::new(Arc::new(ResNet18Cifar::default()), 10, "").unwrap();
        let mut params = net.init_store(backend.clone(), &mut rng_from_seed(0)).unwrap();
        // Same names, order, shapes and dtypes as PyTorch's state_dict.
        let ours: Vec<(String, Vec<usize>, DType)> =
            params.iter().map(|(n, p)| (n.to_string(), p.tensor.dims(), p.tensor.dtype())).collect();
        assert_eq!(ours.len(), entries.len());
        for ((name, dims, dtype), entry) in ours.iter().zip(entries) {
            assert_eq!(name, entry["name"].as_str().unwrap());
            assert_eq!(dims, &dims_of(entry), "{name}");
            let want = if entry["dtype"] == "int64" { DType::I64 } else { DType::F32 };
            assert_eq!(*dtype, want, "{name}");
        }
        // The formula's weights, written as a PyTorch-named safetensors file, then loaded.
        let tensors: Vec<(String, Tensor)> = entries
            .iter()
            .enumerate()
            .map(|(j, entry)| {
                let name = entry["name"].as_str().unwrap().to_string();
                let dims = dims_of(entry);
                let tensor = if entry["dtype"] == "int64" {
                    backend.from_i64(&[0], &[]).unwrap()
                } else {
                    backend.from_f32(&formula(&name, j, &dims), &dims).unwrap()
                };
                (name, tensor)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resnet18.safetensors");
        let host = HostTensors::from_tensors(tensors.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
        std::fs::write(&path, host.serialize(None).unwrap()).unwrap();
        checkpoint::load(&mut params, &path).unwrap();
        for check in fixture["value_checks"].as_array().unwrap().iter().filter(|c| c["name"] != "input") {
            let name = check["name"].as_str().unwrap();
            let value =
                params.get(name).unwrap().to_vec_f32().unwrap()[check["i"].as_u64().unwrap() as usize];
            assert_eq!(value, check["value"].as_f64().unwrap() as f32, "formula of {name}");
        }

        let input: Vec<f32> = (0..2 * 3 * 32 * 32).map(|i| (1.5 * (0.11 * i as f64).sin()) as f32).collect();
        let images = backend.from_f32(&input, &[2, 3, 32, 32]).unwrap();
        let pass = Forward::eval(&params);
        let features = net.features(&pass, &images).unwrap();
        let logits = net.head(&pass, &features).unwrap().to_vec_f32().unwrap();
        let want: Vec<f64> = fixture["logits_f64"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().clone())
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (i, (got, want)) in logits.iter().zip(&want).enumerate() {
            let err = (f64::from(*got) - want).abs() / want.abs().max(1e-2);
            assert!(
                err < 1e-4,
                "{}: logit {i}: {got} vs PyTorch {want} (relative {err:.2e})",
                backend.name()
            );
        }
        let first = features.narrow(0, 0, 1).unwrap().to_vec_f32().unwrap();
        let want_features = fixture["features_f64"].as_array().unwrap();
        for (got, want) in first.iter().zip(want_features) {
            assert!((f64::from(*got) - want.as_f64().unwrap()).abs() < 1e-4, "{}: features", backend.name());
        }
    }
}
