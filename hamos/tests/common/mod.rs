//! Helpers shared by the training tests: the trainer's first batch, one step from a copy of the
//! start state, and fine-tuning options.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses some of them

pub mod wiring;

use std::path::Path;
use std::sync::Arc;

use hamos::train::step::{hamos_step, StepInputs, StepReport};
use hamos::train::{self, epoch_batches, Feed, FeedBatch, Prepared, StartState, TrainOptions};
use hamos::RunConfig;
use hamos_api::{Backend, ParamStore};

/// The first two-view, augmented batch of epoch 0, as the trainer draws it.
pub fn first_batch(config: &RunConfig, data: &Prepared) -> FeedBatch {
    let feed = Feed { config, data, two_views: true, augment: true, seed: config.seed };
    epoch_batches(&feed, 0).unwrap().next().unwrap().unwrap()
}

/// One HamOS step on `batch` from a copy of `state` with a fresh optimizer (the run's momentum,
/// Nesterov and weight decay) at `learning_rate`, the sampler seeded by `seed`: the new
/// parameters and the report.
pub fn step(
    config: &RunConfig,
    data: &Prepared,
    state: &StartState,
    batch: &FeedBatch,
    (with_outliers, seed, learning_rate): (bool, u64, f64),
) -> (ParamStore, StepReport) {
    let backend: Arc<dyn Backend> = state.params.backend().clone();
    let views = backend.from_f32(&batch.images, &batch.dims()).unwrap();
    let labels = backend.from_i64(&batch.labels, &[batch.labels.len()]).unwrap();
    let (mut params, mut buffer) = (state.params.clone(), state.buffer.clone());
    let (mut sgd, _, _) =
        train::optimizer(config, data, config.train.learning_rate, 1, config.train.nesterov).unwrap();
    let inputs = StepInputs {
        config,
        net: &state.net,
        views: &views,
        labels: &labels,
        host_labels: &batch.labels,
        learning_rate,
        with_outliers,
    };
    let report =
        hamos_step(&inputs, &mut params, &mut sgd, &mut buffer, &mut hamos_api::rng_from_seed(seed)).unwrap();
    (params, report)
}

/// Fine-tuning with outliers into `dir` under `label`, from scratch.
pub fn options(dir: &Path, label: &str) -> TrainOptions {
    TrainOptions {
        checkpoint: Some(hamos::RunDir::at(dir).checkpoint(label)),
        label: label.into(),
        with_outliers: true,
        resume: false,
        stop_after_epochs: None,
    }
}
