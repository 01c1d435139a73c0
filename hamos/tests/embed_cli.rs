//! `hamos embed` needs only the model config, the normalization and the set to embed: 20
//! CIFAR-format images through a CIFAR ResNet-18 checkpoint (OpenOOD's names), with no training
//! set; the outputs are the network's own; a wrong model kind is named with the one that fits.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use hamos_api::{Backend, Forward};
use hamos_nn::backbones::ResNet18Cifar;
use hamos_nn::Classifier;

const IMAGES: usize = 20;
const CIFAR_MEAN: &str = "data.mean=[0.4914, 0.4822, 0.4465]";
const CIFAR_STD: &str = "data.std=[0.2470, 0.2435, 0.2616]";

fn hamos(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hamos"));
    cmd.env("HAMOS_CACHE_DIR", dir.join("cache")).env("RAYON_NUM_THREADS", "2").current_dir(dir);
    cmd
}

/// A CIFAR-10 batch file of `IMAGES` random images: per image a label byte, then 3x32x32 pixels.
fn write_cifar(path: &Path) -> Vec<u8> {
    let mut rng = hamos_api::rng_from_seed(5);
    let noise = hamos_api::backend::randn_host(IMAGES * 3072, 0.0, 1.0, &mut rng);
    let mut bytes = Vec::new();
    let mut pixels = Vec::new();
    for (i, image) in noise.chunks(3072).enumerate() {
        bytes.push((i % 10) as u8);
        let image: Vec<u8> = image.iter().map(|v| (128.0 + 50.0 * v).clamp(0.0, 255.0) as u8).collect();
        bytes.extend(&image);
        pixels.extend(image);
    }
    std::fs::write(path, bytes).unwrap();
    pixels
}

#[test]
fn embed_runs_a_cifar_resnet_checkpoint_without_a_training_set() {
    let tmp = tempfile::tempdir().unwrap();
    let pixels = write_cifar(&tmp.path().join("batch.bin"));
    let backend: Arc<dyn Backend> = Arc::new(hamos_candle::CandleBackend::cpu());
    let net = Classifier::new(Arc::new(ResNet18Cifar::default()), 10, "").unwrap();
    let params = net.init_store(backend.clone(), &mut hamos_api::rng_from_seed(3)).unwrap();
    let checkpoint = tmp.path().join("resnet18.safetensors");
    hamos_nn::checkpoint::save(&params, &checkpoint).unwrap();
    let data = "format = \"cifar\", files = [\"batch.bin\"], classes = 10";

    let out = tmp.path().join("out.npz");
    let result = hamos(tmp.path())
        .args(["embed", "--set", "model.kind=resnet18_cifar", "--set", CIFAR_MEAN, "--set", CIFAR_STD])
        .args(["--data", data, "--checkpoint"])
        .arg(&checkpoint)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&result.stderr));
    assert!(stdout.contains(&format!("wrote {IMAGES} rows through the classifier")), "{stdout}");

    // The logits are the network's own on the normalized images (eval mode).
    let file = std::fs::File::open(&out).unwrap();
    let mut archive = npyz::npz::NpzArchive::new(std::io::BufReader::new(file)).unwrap();
    let logits = archive.by_name("logits").unwrap().unwrap();
    assert_eq!(logits.shape(), [IMAGES as u64, 10]);
    let logits: Vec<f32> = logits.into_vec().unwrap();
    let labels: Vec<i64> = archive.by_name("labels").unwrap().unwrap().into_vec().unwrap();
    assert_eq!(labels, (0..IMAGES as i64).map(|i| i % 10).collect::<Vec<_>>());
    let (mean, std) = ([0.4914f32, 0.4822, 0.4465], [0.2470f32, 0.2435, 0.2616]);
    let inputs: Vec<f32> = pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| (f32::from(p) / 255.0 - mean[i / 1024 % 3]) / std[i / 1024 % 3])
        .collect();
    let images = backend.from_f32(&inputs, &[IMAGES, 3, 32, 32]).unwrap();
    let expected = net.logits(&Forward::eval(&params), &images).unwrap().to_vec_f32().unwrap();
    let worst = logits.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-3, "logits differ from the network's by {worst}");

    // The preset's model is small_cnn: the error names the kind the checkpoint fits.
    let wrong = hamos(tmp.path())
        .args(["embed", "--set", CIFAR_MEAN, "--set", CIFAR_STD, "--data", data, "--checkpoint"])
        .arg(&checkpoint)
        .args(["--out", "wrong.npz"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "{stderr}");
    assert!(
        stderr.contains("looks like a `resnet18_cifar` network: add `--set model.kind=resnet18_cifar`"),
        "{stderr}"
    );
}
