//! Evaluation: features of every test set through each model, the scorers, the OOD metrics,
//! the run directory's reports, raw scores and plots, and the main job (`hamos run`).

pub mod evaluate;
pub mod job;
pub mod metrics;
pub mod plots;
pub mod report;
