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
pub mod embeddings;
pub mod plugins;
pub mod synth;
pub mod synth_bench;
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

/// Opens the config's backend with its options (the thread count).
pub fn open_backend(config: &RunConfig) -> Result<std::sync::Arc<dyn hamos_api::Backend>> {
    let options = hamos_api::BackendOptions { threads: config.threads };
    hamos_api::open_backend_with(&config.backend, &config.device, &options)
}
