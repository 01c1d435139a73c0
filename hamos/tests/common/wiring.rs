//! The small candle run of the wiring tests, its pretrained classifier (cached once per test
//! binary) and host-side helpers to compare with.

use std::sync::Mutex;

use hamos::pipeline::Silent;
use hamos::train::step::StepReport;
use hamos::train::{self, FeedBatch, Prepared, Pretrained, StartState};
use hamos::RunConfig;
use hamos_api::{DType, ParamKind, ParamStore};

/// A small run on candle: 352 images, batches of 32, a small buffer, `k = 8`.
pub fn config(extra: &[&str]) -> RunConfig {
    let mut overrides: Vec<String> = [
        "backend=candle",
        "threads=1",
        "data.train_limit=352",
        "train.batch_size=32",
        "train.epochs=2",
        "train.pretrain_epochs=1",
        "train.buffer_size=32",
        "energy.k=8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.extend(extra.iter().map(|s| s.to_string()));
    hamos::load_config(None, overrides).unwrap()
}

/// Pretraining writes the cache; the tests of this binary take turns so that it runs once.
pub static PRETRAINING: Mutex<()> = Mutex::new(());

pub fn pretrained(config: &RunConfig, data: &Prepared) -> Pretrained {
    let _turn = PRETRAINING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = concat!(env!("CARGO_TARGET_TMPDIR"), "/hamos-wiring-cache");
    train::pretrained(config, data, Some(cache.as_ref()), &Silent).unwrap()
}

/// Prepared data, the pretrained classifier and the start of fine-tuning.
pub fn start(config: &RunConfig) -> (Prepared, Pretrained, StartState) {
    let data = train::prepare(config).unwrap();
    let start = pretrained(config, &data);
    let state = train::start_state(config, &data, &start).unwrap();
    (data, start, state)
}

pub fn f32s(params: &ParamStore, name: &str) -> Vec<f32> {
    params.get(name).unwrap().to_vec_f32().unwrap()
}

/// Every tensor of `params` on the host (as f64; integers exactly), by name.
pub fn host(params: &ParamStore, kind: Option<ParamKind>) -> Vec<(String, Vec<f64>)> {
    params
        .iter()
        .filter(|(_, p)| kind.is_none_or(|k| p.kind == k))
        .map(|(n, p)| {
            let values = match p.tensor.dtype() {
                DType::I64 => p.tensor.to_vec_i64().unwrap().into_iter().map(|v| v as f64).collect(),
                _ => p.tensor.to_vec_f32().unwrap().into_iter().map(f64::from).collect(),
            };
            (n.to_string(), values)
        })
        .collect()
}

/// The largest `|a - b| / (1 + |b|)`.
pub fn max_rel(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - y).abs() / (1.0 + y.abs())).fold(0.0, f64::max)
}

/// `(x / 255 - mean) / std` in f64.
pub fn normalized(pixel: u8, mean: f32, std: f32) -> f64 {
    (f64::from(pixel) / 255.0 - f64::from(mean)) / f64::from(std)
}

/// One HamOS step from a copy of `state` at learning rate 0.1, the sampler seeded by `seed`.
pub fn step(
    config: &RunConfig,
    data: &Prepared,
    state: &StartState,
    batch: &FeedBatch,
    with_outliers: bool,
    seed: u64,
) -> (ParamStore, StepReport) {
    super::step(config, data, state, batch, (with_outliers, seed, 0.1))
}
