//! What the pipeline tells its caller while it works: messages, phases of steps (pretraining,
//! fine-tuning, feature extraction), every fine-tuning step's diagnostics and every epoch's
//! summary. The pipeline calls an [`Observer`]; what to do with the events is the caller's:
//! the `hamos` command draws progress bars ([`crate::cli::progress::Progress`]), a run directory
//! appends the steps to `diagnostics.jsonl` ([`DiagnosticsLog`]), a library user may do
//! nothing ([`Silent`]) or forward them to their own logging.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hamos_api::{Error, Result};

use crate::train::step::StepReport;
use crate::train::EpochSummary;

/// Receives the pipeline's progress and diagnostics. Every method has a default that ignores
/// the event, so an observer implements only what it uses.
pub trait Observer: Sync {
    /// A line for the user (what was loaded, where a model came from, timings).
    fn message(&self, _line: &str) {}

    /// A phase of `total` steps starts (`pretrain (cross-entropy)`, `fine-tune (hamos)`,
    /// `features`), `done` of them already done (a resumed fine-tuning).
    fn phase_started(&self, _phase: &str, _total: u64, _done: u64) {}

    /// One more step of `phase` is done; `status` sums it up (loss, acceptance, images/s),
    /// empty when there is nothing to say.
    fn phase_advanced(&self, _phase: &str, _status: &str) {}

    /// `phase` ended.
    fn phase_finished(&self, _phase: &str) {}

    /// The diagnostics of one fine-tuning step (losses, gradient norms, the sampler's).
    fn step(&self, _report: &StepReport) -> Result<()> {
        Ok(())
    }

    /// Epoch `summary.epoch` of `epochs` of fine-tuning `model` ended.
    fn epoch(&self, _model: &str, _summary: &EpochSummary, _epochs: usize) {}
}

/// An observer that ignores everything: the pipeline runs quietly.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Observer for Silent {}

/// The line the `hamos` command prints after each fine-tuning epoch.
pub fn epoch_line(model: &str, summary: &EpochSummary, epochs: usize) -> String {
    format!("{model} epoch {}/{epochs}: {}", summary.epoch, summary.describe())
}

/// Appends every step's diagnostics to a JSON-lines file (a run's `diagnostics.jsonl`) and
/// passes every event on to `inner`.
pub struct DiagnosticsLog<'a> {
    inner: &'a dyn Observer,
    path: PathBuf,
    writer: Mutex<BufWriter<File>>,
}

impl<'a> DiagnosticsLog<'a> {
    /// Opens `path` for appending (created if absent) in front of `inner`.
    pub fn open(path: &Path, inner: &'a dyn Observer) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Io { op: "opening diagnostics", path: path.to_path_buf(), source })?;
        Ok(DiagnosticsLog { inner, path: path.to_path_buf(), writer: Mutex::new(BufWriter::new(file)) })
    }
}

impl Observer for DiagnosticsLog<'_> {
    fn message(&self, line: &str) {
        self.inner.message(line);
    }

    fn phase_started(&self, phase: &str, total: u64, done: u64) {
        self.inner.phase_started(phase, total, done);
    }

    fn phase_advanced(&self, phase: &str, status: &str) {
        self.inner.phase_advanced(phase, status);
    }

    fn phase_finished(&self, phase: &str) {
        self.inner.phase_finished(phase);
    }

    fn step(&self, report: &StepReport) -> Result<()> {
        let line = serde_json::to_string(report).map_err(|e| Error::Data(format!("diagnostics: {e}")))?;
        let mut writer = self.writer.lock().map_err(|_| Error::Data("diagnostics writer poisoned".into()))?;
        writeln!(writer, "{line}").and_then(|()| writer.flush()).map_err(|source| Error::Io {
            op: "writing diagnostics",
            path: self.path.clone(),
            source,
        })?;
        drop(writer);
        self.inner.step(report)
    }

    fn epoch(&self, model: &str, summary: &EpochSummary, epochs: usize) {
        self.inner.epoch(model, summary, epochs);
    }
}
