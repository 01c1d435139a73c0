//! # hamos: the HamOS pipeline
//!
//! Links every plugin crate of the workspace and the compiled backends, so that their
//! registrations are visible, and holds the pipeline behind the `hamos` command:
//! [`synth`] (standalone synthesis from embedding files, [`embeddings`] for the formats),
//! [`bench`] and [`synth_bench`] (benchmarks of the tensor abstraction and of synthesis).
//!
//! ```
//! let config = hamos::load_config(None, vec!["sampler.step_size=0.05".into()])?;
//! let backend = hamos_api::open_backend(&config.backend, &config.device)?;
//! assert_eq!(backend.name(), "candle");
//! # Ok::<(), hamos::Error>(())
//! ```

pub mod bench;
pub mod data;
pub mod embed_cmd;
pub mod embeddings;
pub mod eval;
pub mod plugins;
pub mod rundir;
pub mod step_bench;
pub mod synth;
pub mod synth_bench;
pub mod train;
pub mod train_bench;

use std::path::PathBuf;

pub use hamos_api::{Error, Result, RunConfig};

// Registrations live in these crates; naming them keeps the linker from dropping them.
use hamos_candle as _;
use hamos_losses as _;
use hamos_nn as _;
use hamos_samplers as _;
use hamos_scorers as _;
#[cfg(feature = "tch")]
use hamos_tch as _;

/// Loads a run config: defaults, `file`, `HAMOS_` environment variables, then `overrides`.
pub fn load_config(file: Option<PathBuf>, overrides: Vec<String>) -> Result<RunConfig> {
    RunConfig::load(file, overrides)
}

/// The preset of `hamos run` and `hamos train` when no `--config` is given: the shipped data
/// with a schedule sized for a 2-core CPU (`examples/configs/default.toml`, built in).
pub const SHIPPED_PRESET: &str = include_str!("../../examples/configs/default.toml");

/// Loads a config for a job: the [`SHIPPED_PRESET`] when `file` is `None`, else `file`; then the
/// environment and `overrides`.
pub fn load_job_config(file: Option<PathBuf>, overrides: Vec<String>) -> Result<RunConfig> {
    let base = file.is_none().then(|| SHIPPED_PRESET.to_string());
    hamos_api::ConfigSources { base, file, env: true, overrides }.load()
}

/// Opens the config's backend with its options (the thread count).
pub fn open_backend(config: &RunConfig) -> Result<std::sync::Arc<dyn hamos_api::Backend>> {
    let options = hamos_api::BackendOptions { threads: config.threads };
    hamos_api::open_backend_with(&config.backend, &config.device, &options)
}

/// `hamos train`: writes the resolved config into `dir`, pretrains (or loads the cached or given
/// classifier) and fine-tunes, logging every step's diagnostics to `dir/diagnostics.jsonl`.
pub fn train_command(
    config: &RunConfig,
    dir: &std::path::Path,
    resume: bool,
    with_outliers: bool,
) -> Result<train::Trained> {
    eval::job::write_provenance(config, dir)?;
    let progress = train::progress::Progress::new(true).with_diagnostics(&dir.join("diagnostics.jsonl"))?;
    let data = train::prepare(config)?;
    let start = train::pretrained(config, &data, &progress)?;
    progress.println(&format!("pretrained classifier: {}", start.source));
    let pretrained_file = dir.join("checkpoints").join(eval::models::PRETRAINED_FILE);
    hamos_nn::checkpoint::save(&start.params, &pretrained_file)?;
    let id_only = format!("{}_only", config.loss.typetag_name());
    let label = if with_outliers { "hamos" } else { id_only.as_str() };
    let options = train::TrainOptions {
        out_dir: dir.to_path_buf(),
        label: label.to_string(),
        with_outliers,
        resume,
        stop_after_epochs: None,
    };
    train::finetune(config, &data, &start, &options, &progress)
}
