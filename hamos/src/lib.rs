//! # hamos: the HamOS pipeline
//!
//! Links every plugin crate of the workspace and the compiled backends, so that their
//! registrations are visible, and holds the run config ([`config`]: [`RunConfig`] loaded from
//! TOML, `HAMOS_` environment variables and `--set` overrides), the pipeline as a library
//! ([`Pipeline`]: prepare, pretrain, fine-tune, evaluate, in memory; see [`pipeline`] for an
//! example), the run directories ([`RunDir`]) and the jobs of the `hamos` command ([`cli`]):
//! [`eval::job`] (`hamos run`), [`ablate`], [`synth`] (standalone synthesis from embedding
//! files, [`embeddings`] for the formats) and [`bench`] (benchmarks of the tensor abstraction,
//! of synthesis and of training steps).
//!
//! A tiny model (an MLP on 352 images of the shipped data, one epoch each), pretrained,
//! fine-tuned with synthesized outliers and evaluated in memory, the validation split against
//! uniform noise:
//!
//! ```
//! use hamos::eval::EvalModel;
//! use hamos::pipeline::{Pipeline, TestSets};
//! use hamos::{DatasetSpec, OodGroup};
//!
//! // An MLP on 352 images, one epoch each (hamos::config::SMOKE_OVERRIDES spells it out).
//! let overrides = hamos::config::SMOKE_OVERRIDES.map(String::from).to_vec();
//! let config = hamos::load_config(None, overrides)?;
//! let pipeline = Pipeline::new(&config);
//! let data = pipeline.prepare()?;
//! let pretrained = pipeline.pretrain(&data)?;
//! let trained = pipeline.finetune(&data, &pretrained, true)?;
//! assert_eq!(trained.history.len(), 1);
//!
//! let noise = DatasetSpec::Noise { kind: "uniform".into(), count: 64 };
//! let noise = hamos::data::load(&noise, 7, Some(data.train.shape))?;
//! let tests = TestSets::new(data.validation.clone(), vec![(noise, OodGroup::Far)])?;
//! let models = [EvalModel::pretrained(&pretrained), EvalModel::finetuned("hamos", &trained)];
//! let evaluation = pipeline.evaluate(&data, &tests, &models)?;
//! let hamos_far = evaluation
//!     .records
//!     .iter()
//!     .find(|r| r.model == "hamos" && r.scorer == "knn" && r.dataset == "far_average")
//!     .expect("the configured scorer's far-OOD average");
//! assert!((0.0..=1.0).contains(&hamos_far.auroc));
//! # Ok::<(), hamos::Error>(())
//! ```

pub mod ablate;
pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod embed_cmd;
pub mod embeddings;
pub mod eval;
pub mod pipeline;
pub mod plugins;
pub mod run_dir;
pub mod synth;
pub mod train;

use std::path::PathBuf;

pub use config::{
    AugmentConfig, ConfigSources, DataConfig, DatasetSpec, OodGroup, OodLossForm, OodSet, RunConfig,
    TrainConfig,
};
pub use hamos_api::{Error, Result};
pub use pipeline::{Observer, Pipeline};
pub use run_dir::RunDir;

// Registrations live in these crates; naming them keeps the linker from dropping them.
use hamos_candle as _;
use hamos_losses as _;
use hamos_nn as _;
use hamos_samplers as _;
use hamos_scorers as _;
#[cfg(feature = "tch")]
use hamos_tch as _;

/// The preset of `hamos config`, `run`, `train` and `synth` unless `--base table4` is given: the
/// shipped data with a schedule sized for a 2-core CPU (`examples/configs/default.toml`, built in).
pub const SHIPPED_PRESET: &str = include_str!("../../examples/configs/default.toml");

/// What a config starts from before `--config`, the environment and `--set` layer over it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Base {
    /// The [`SHIPPED_PRESET`] (over the code defaults).
    #[default]
    Preset,
    /// The code defaults alone: the paper's Table 4 (20 fine-tuning epochs).
    Table4,
}

impl std::str::FromStr for Base {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "preset" => Ok(Base::Preset),
            "table4" => Ok(Base::Table4),
            other => Err(Error::invalid("--base", format!("`{other}`: use `preset` or `table4`"))),
        }
    }
}

/// The config sources of a command: `base`, then `file`, the `HAMOS_` environment, `overrides`.
pub fn config_sources(base: Base, file: Option<PathBuf>, overrides: Vec<String>) -> ConfigSources {
    let base = (base == Base::Preset).then(|| SHIPPED_PRESET.to_string());
    ConfigSources { base, file, env: true, overrides }
}

/// Loads a run config from `base`, `file`, `HAMOS_` environment variables, then `overrides`.
pub fn load_config_from(base: Base, file: Option<PathBuf>, overrides: Vec<String>) -> Result<RunConfig> {
    config_sources(base, file, overrides).load()
}

/// Loads a run config as `hamos config` and the jobs do: the [`SHIPPED_PRESET`], then `file`
/// (layered over it), the `HAMOS_` environment variables, then `overrides`.
pub fn load_config(file: Option<PathBuf>, overrides: Vec<String>) -> Result<RunConfig> {
    load_config_from(Base::Preset, file, overrides)
}

/// Opens the config's backend with its options (the thread count).
pub fn open_backend(config: &RunConfig) -> Result<std::sync::Arc<dyn hamos_api::Backend>> {
    let options = hamos_api::BackendOptions { threads: config.threads };
    hamos_api::open_backend_with(&config.backend, &config.device, &options)
}

/// The model a `hamos train` fine-tunes: `hamos`, or `<loss>_only` without outliers (the name of
/// its checkpoint, its diagnostics and its rows in reports).
pub fn train_label(config: &RunConfig, with_outliers: bool) -> String {
    match with_outliers {
        true => "hamos".to_string(),
        false => format!("{}_only", config.loss.typetag_name()),
    }
}
