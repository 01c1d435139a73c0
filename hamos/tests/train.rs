//! HamOS fine-tuning on the shipped data: each loss plugin trains on every backend, outliers
//! reach the loss, a killed run resumes to the same weights, and a non-finite loss stops with
//! the step and keeps the last good checkpoint.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use common::options;
use hamos::pipeline::Silent;
use hamos::train::{self, TrainOptions};
use hamos::RunConfig;
use hamos_api::ParamStore;

/// Where this binary's tests cache their pretrained classifiers.
const CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/hamos-train-cache");

/// A small run: 32 images per class, batches of 32, two epochs, a small buffer.
fn config(backend: &str, extra: &[&str]) -> RunConfig {
    let mut overrides: Vec<String> = [
        format!("backend={backend}"),
        "threads=1".into(),
        "data.train_limit=352".into(),
        "train.batch_size=32".into(),
        "train.epochs=2".into(),
        "train.pretrain_epochs=1".into(),
        "train.buffer_size=32".into(),
        "energy.k=8".into(),
    ]
    .into();
    overrides.extend(extra.iter().map(|s| s.to_string()));
    hamos::load_config(None, overrides).unwrap()
}

fn backends() -> Vec<&'static str> {
    let mut names = vec!["candle"];
    if cfg!(feature = "tch") {
        names.push("tch");
    }
    names
}

fn host(params: &ParamStore) -> Vec<(String, Vec<f32>)> {
    params
        .iter()
        .filter(|(_, p)| p.tensor.dtype() == hamos_api::DType::F32)
        .map(|(n, p)| (n.to_string(), p.tensor.to_vec_f32().unwrap()))
        .collect()
}

#[test]
fn each_loss_fine_tunes_on_every_backend() {
    for backend in backends() {
        for loss in ["cider", "supcon", "simclr", "ce_only"] {
            let config = config(backend, &[&format!("loss.kind={loss}"), "train.epochs=3"]);
            let progress = Silent;
            let data = train::prepare(&config).unwrap();
            let start = train::pretrained(&config, &data, Some(CACHE.as_ref()), &progress).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let trained =
                train::finetune(&config, &data, &start, &options(dir.path(), loss), &progress).unwrap();
            let losses: Vec<f64> = trained.history.iter().map(|e| e.loss).collect();
            assert_eq!(losses.len(), 3);
            assert!(losses[2] < losses[0], "{backend} {loss}: epoch losses {losses:?} did not fall");
            assert!(
                trained.history.iter().all(|e| e.acceptance.is_some_and(|a| a > 0.0)),
                "{backend} {loss}: no outlier accepted"
            );
            assert!(trained.checkpoint.as_ref().is_some_and(|p| p.is_file()));
        }
    }
}

#[test]
fn outliers_reach_the_loss() {
    for backend in backends() {
        let config = config(backend, &[]);
        let progress = Silent;
        let data = train::prepare(&config).unwrap();
        let start = train::pretrained(&config, &data, Some(CACHE.as_ref()), &progress).unwrap();
        let state = train::start_state(&config, &data, &start).unwrap();
        let batch = common::first_batch(&config, &data);
        let run = |with_outliers: bool, seed: u64| {
            let (params, report) = common::step(&config, &data, &state, &batch, (with_outliers, seed, 0.01));
            (host(&params), report)
        };
        let (with, report) = run(true, 1);
        let (without, plain) = run(false, 1);
        let (other_outliers, _) = run(true, 2);
        assert!(report.outliers > 0 && report.ood.is_finite() && report.ood > 0.0, "{backend}: {report:?}");
        assert_eq!(plain.outliers, 0);
        let differs = |a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], name: &str| {
            let (x, y) = (
                &a.iter().find(|(n, _)| n == name).unwrap().1,
                &b.iter().find(|(n, _)| n == name).unwrap().1,
            );
            x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max)
        };
        for name in ["backbone.conv1.weight", "head.2.weight"] {
            assert!(
                differs(&with, &without, name) > 1e-7,
                "{backend}: {name} moved the same without outliers"
            );
            assert!(
                differs(&with, &other_outliers, name) > 1e-8,
                "{backend}: {name} ignores which outliers were drawn"
            );
        }
    }
}

#[test]
fn resume_after_a_kill_reproduces_the_weights() {
    let config = config("candle", &[]);
    let progress = Silent;
    let data = train::prepare(&config).unwrap();
    let start = train::pretrained(&config, &data, Some(CACHE.as_ref()), &progress).unwrap();
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted =
        train::finetune(&config, &data, &start, &options(whole.path(), "hamos"), &progress).unwrap();
    let killed = tempfile::tempdir().unwrap();
    let first = TrainOptions { stop_after_epochs: Some(1), ..options(killed.path(), "hamos") };
    let partial = train::finetune(&config, &data, &start, &first, &progress).unwrap();
    assert_eq!(partial.history.len(), 1);
    let resumed = train::finetune(
        &config,
        &data,
        &start,
        &TrainOptions { resume: true, ..options(killed.path(), "hamos") },
        &progress,
    )
    .unwrap();
    assert_eq!(resumed.history.len(), 1, "the resumed run trains the second epoch only");
    assert_eq!(
        host(&resumed.params),
        host(&uninterrupted.params),
        "resumed weights differ from the uninterrupted run"
    );
    // The checkpoint files too, byte for byte (their metadata once came out in hash order).
    assert!(
        std::fs::read(resumed.checkpoint.unwrap()).unwrap()
            == std::fs::read(uninterrupted.checkpoint.unwrap()).unwrap(),
        "the resumed checkpoint's bytes differ from the uninterrupted run's"
    );
}

#[test]
fn a_non_finite_loss_stops_with_the_step_and_keeps_the_checkpoint() {
    let config = config("candle", &[]);
    let progress = Silent;
    let data = train::prepare(&config).unwrap();
    let start = train::pretrained(&config, &data, Some(CACHE.as_ref()), &progress).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = TrainOptions { stop_after_epochs: Some(1), ..options(dir.path(), "hamos") };
    let good = train::finetune(&config, &data, &start, &first, &progress).unwrap();
    let good_checkpoint = good.checkpoint.unwrap();
    let saved = std::fs::read(&good_checkpoint).unwrap();
    let exploding = self::config("candle", &["train.learning_rate=1e30"]);
    let err = match train::finetune(
        &exploding,
        &data,
        &start,
        &TrainOptions { resume: true, ..options(dir.path(), "hamos") },
        &progress,
    ) {
        Ok(_) => panic!("a learning rate of 1e30 trained without a non-finite loss"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("epoch 2 step") && err.contains("non-finite"), "{err}");
    assert!(err.contains("last good checkpoint"), "{err}");
    assert_eq!(std::fs::read(&good_checkpoint).unwrap(), saved, "the good checkpoint was overwritten");
}

/// The pretraining cache key changes with everything the pretraining reads (momentum included)
/// and with nothing it does not read (the OOD sets, fine-tuning options, the augmentation when
/// pretraining does not augment).
#[test]
fn the_pretraining_cache_key_covers_what_pretraining_reads() {
    let base = config("candle", &["train.pretrain_augment=false"]);
    let data = train::prepare(&base).unwrap();
    let key = |extra: &[&str]| {
        let mut all = vec!["train.pretrain_augment=false"];
        all.extend_from_slice(extra);
        let config = config("candle", &all);
        hamos::train::pretrain::cache_path(CACHE.as_ref(), &config, &data, "candle").unwrap()
    };
    let reference = key(&[]);
    for read in
        ["train.momentum=0.8", "train.weight_decay=0.001", "train.pretrain_learning_rate=0.3", "seed=5"]
    {
        assert_ne!(key(&[read]), reference, "{read} must change the cache key");
    }
    for unread in [
        "train.ood_weight=0.3",
        "train.nesterov=false",
        "data.augment.crop_padding=3",
        "data.loader_threads=2",
    ] {
        assert_eq!(key(&[unread]), reference, "{unread} must not change the cache key");
    }
    assert_ne!(
        key(&["train.pretrain_augment=true", "data.augment.crop_padding=3"]),
        key(&["train.pretrain_augment=true"]),
        "an augmented pretraining reads the augmentation"
    );
}
