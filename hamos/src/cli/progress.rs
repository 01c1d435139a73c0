//! What a user of the `hamos` command sees while the pipeline works: a progress bar per phase
//! (loss terms, acceptance, images/s in its message) and the pipeline's messages above the
//! bars, or as `tracing` logs when the bars are hidden.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::{epoch_line, Observer};
use crate::train::EpochSummary;

/// Progress bars on stderr: an [`Observer`] of the pipeline.
pub struct Progress {
    bars: MultiProgress,
    phases: Mutex<Vec<(String, ProgressBar)>>,
}

impl Progress {
    /// Bars on stderr when `show` (indicatif hides them when stderr is not a terminal).
    pub fn new(show: bool) -> Self {
        let target = if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Progress { bars: MultiProgress::with_draw_target(target), phases: Mutex::new(Vec::new()) }
    }

    /// A bar of `len` steps labelled `label`.
    fn bar(&self, label: &str, len: u64) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(len));
        let style = ProgressStyle::with_template("{prefix:>28} {bar:28} {pos}/{len} {elapsed}<{eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        bar
    }

    /// Prints a line above the bars.
    fn println(&self, line: &str) {
        if self.bars.is_hidden() {
            tracing::info!("{line}");
        } else {
            let _ = self.bars.println(line);
        }
    }

    fn with_bar(&self, phase: &str, action: impl FnOnce(&ProgressBar)) {
        if let Ok(phases) = self.phases.lock() {
            if let Some((_, bar)) = phases.iter().rev().find(|(name, _)| name == phase) {
                action(bar);
            }
        }
    }
}

impl Observer for Progress {
    fn message(&self, line: &str) {
        self.println(line);
    }

    fn phase_started(&self, phase: &str, total: u64, done: u64) {
        let bar = self.bar(phase, total);
        bar.set_position(done);
        if let Ok(mut phases) = self.phases.lock() {
            phases.push((phase.to_string(), bar));
        }
    }

    fn phase_advanced(&self, phase: &str, status: &str) {
        self.with_bar(phase, |bar| {
            if !status.is_empty() {
                bar.set_message(status.to_string());
            }
            bar.inc(1);
        });
    }

    fn phase_finished(&self, phase: &str) {
        if let Ok(mut phases) = self.phases.lock() {
            if let Some(index) = phases.iter().rposition(|(name, _)| name == phase) {
                phases.remove(index).1.finish_and_clear();
            }
        }
    }

    fn epoch(&self, model: &str, summary: &EpochSummary, epochs: usize) {
        self.println(&epoch_line(model, summary, epochs));
    }
}
