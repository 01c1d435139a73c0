//! What a user sees while training: progress bars over steps (loss terms, acceptance, images/s),
//! structured logs (tracing) for epoch summaries, and the sampler diagnostics of every step as
//! JSON lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hamos_api::{Error, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Bars and the diagnostics file of one run.
pub struct Progress {
    bars: MultiProgress,
    diagnostics: Option<(PathBuf, Mutex<BufWriter<File>>)>,
}

impl Progress {
    /// Bars on stderr when `show` (indicatif hides them when stderr is not a terminal).
    pub fn new(show: bool) -> Self {
        let target = if show { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Progress { bars: MultiProgress::with_draw_target(target), diagnostics: None }
    }

    /// Also appends one JSON line per step to `path`.
    pub fn with_diagnostics(mut self, path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Io { op: "opening diagnostics", path: path.to_path_buf(), source })?;
        self.diagnostics = Some((path.to_path_buf(), Mutex::new(BufWriter::new(file))));
        Ok(self)
    }

    /// A bar of `len` steps labelled `label`.
    pub fn bar(&self, label: &str, len: u64) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(len));
        let style = ProgressStyle::with_template("{prefix:>28} {bar:28} {pos}/{len} {elapsed}<{eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        bar
    }

    /// Appends `record` as one JSON line to the diagnostics file, if any.
    pub fn record(&self, record: &impl Serialize) -> Result<()> {
        let Some((path, writer)) = &self.diagnostics else { return Ok(()) };
        let line = serde_json::to_string(record).map_err(|e| Error::Data(format!("diagnostics: {e}")))?;
        let mut writer = writer.lock().map_err(|_| Error::Data("diagnostics writer poisoned".into()))?;
        writeln!(writer, "{line}").and_then(|()| writer.flush()).map_err(|source| Error::Io {
            op: "writing diagnostics",
            path: path.clone(),
            source,
        })
    }

    /// Prints a line above the bars.
    pub fn println(&self, line: &str) {
        if self.bars.is_hidden() {
            tracing::info!("{line}");
        } else {
            let _ = self.bars.println(line);
        }
    }
}
