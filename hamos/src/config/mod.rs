//! Run configs: the code defaults (Table 4), a base (a binary's preset), a TOML file, `HAMOS_`
//! environment variables (`HAMOS_SAMPLER__STEP_SIZE=0.05`), then `--set sampler.step_size=0.05`
//! overrides; [`ConfigSources`] says how the layers combine (a plugin's `kind` changed in a
//! layer starts its section from the new plugin's defaults).
//!
//! - [`RunConfig`]: a whole run, its plugins chosen by name from the registry of `hamos_api`;
//! - [`TrainConfig`] (`[train]`) and [`OodLossForm`]: the training schedule;
//! - [`DataConfig`] (`[data]`), [`DatasetSpec`], [`OodSet`], [`OodGroup`] and [`AugmentConfig`]
//!   (`[data.augment]`): the data sets, the split, normalization and augmentation.
//!
//! Plugins check their own sections with the helpers of `hamos_api::config`.

mod augment;
mod data;
mod diagnose;
mod run;
mod sources;

pub use augment::AugmentConfig;
pub use data::{DataConfig, DatasetSpec, OodGroup, OodSet};
pub use run::{OodLossForm, RunConfig, TrainConfig};
pub(crate) use sources::one_line;
pub use sources::{ConfigSources, NON_CONFIG_ENV};

/// `--set` overrides of a run small enough for a smoke test, on the shipped data: an MLP on
/// 352 training images, batches of 32, one epoch of pretraining and one of fine-tuning, a
/// buffer of 32 per class, `k = 8`, one thread (seconds on a laptop; the tests and the crate's
/// example use it).
pub const SMOKE_OVERRIDES: [&str; 8] = [
    "model.kind=mlp",
    "data.train_limit=352",
    "train.batch_size=32",
    "train.epochs=1",
    "train.pretrain_epochs=1",
    "train.buffer_size=32",
    "energy.k=8",
    "threads=1",
];
