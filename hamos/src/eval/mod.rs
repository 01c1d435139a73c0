//! Evaluation: features of every test set through each model, the scorers, the OOD metrics,
//! the run directory's reports, raw scores and plots, and the main job (`hamos run`).

pub mod aggregate;
pub mod evaluate;
pub mod job;
pub mod metrics;
pub mod models;
pub mod plots;
pub mod probe;
pub mod report;
pub mod rerun;
pub mod sphere;

pub use models::{EvalModel, Evaluation, Network};
