//! Run directories: the folder of one `hamos run`, `train` or ablation cell, and its layout.
//!
//! ```text
//! <run>/config.toml            the resolved config          RunDir::config_file
//! <run>/VERSION                the hamos version            RunDir::write_provenance
//! <run>/diagnostics.jsonl      one JSON line per step       RunDir::diagnostics_file
//! <run>/checkpoints/<m>.safetensors                         RunDir::checkpoint
//! <run>/metrics.json, .csv     every metric record          RunDir::metrics_file
//! <run>/hyperspherical.json    Eqn 14 per model
//! <run>/report.md              the report, written last     RunDir::report_file
//! <run>/scores/<model>/<scorer>/{id,<ood set>}.npy          RunDir::scores_dir
//! <run>/plots/*.png                                         RunDir::plots_dir
//! ```
//!
//! A directory is never two runs mixed: one that holds any file is refused unless the job is
//! told what to do with it, `--resume` (training continues from the run's checkpoint, with the
//! run's own `config.toml`) or `--force` (the old run directory is cleared first; a non-empty
//! directory that is not a run directory is never cleared).

mod resume;
mod stamp;

use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};

pub use resume::{differences, resume_config};
pub use stamp::{now_stamp, utc_stamp};

use crate::config::RunConfig;

/// What to do with an existing `--out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse a directory that holds any file.
    Refuse,
    /// Continue the run in it (`hamos train --resume`).
    Resume,
    /// Clear it first, if it is a run directory (`--force`).
    Clear,
}

/// One run's folder: where each of its files goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The resolved config of the run.
    pub const CONFIG: &'static str = "config.toml";
    /// The version of hamos that wrote the run.
    pub const VERSION: &'static str = "VERSION";
    /// One JSON line per fine-tuning step.
    pub const DIAGNOSTICS: &'static str = "diagnostics.jsonl";
    /// The checkpoints' folder.
    pub const CHECKPOINTS: &'static str = "checkpoints";
    /// Every metric record.
    pub const METRICS: &'static str = "metrics.json";
    /// The report, the job's last file.
    pub const REPORT: &'static str = "report.md";
    /// The pretrained classifier's checkpoint name (the other checkpoints are fine-tuned models).
    pub const PRETRAINED: &'static str = "pretrained";

    /// The run directory at `root`, as it is (nothing is created or checked).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        RunDir { root: root.into() }
    }

    /// `dir` if given, else `runs/<UTC time>-<name>`; created with its `checkpoints/`.
    pub fn create(dir: Option<PathBuf>, name: &str) -> Result<Self> {
        let root = dir.unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-{name}", now_stamp())));
        let run = RunDir { root };
        let checkpoints = run.checkpoints_dir();
        std::fs::create_dir_all(&checkpoints).map_err(io("creating run directory", &checkpoints))?;
        Ok(run)
    }

    /// [`RunDir::create`] after applying `existing` to what `dir` holds: a folder that holds
    /// files is refused, resumed or cleared (only if it is a run directory).
    pub fn prepare(dir: Option<PathBuf>, name: &str, existing: Existing) -> Result<Self> {
        let Some(dir) = dir else { return RunDir::create(None, name) };
        if dir.is_dir() && holds_files(&dir)? {
            match existing {
                Existing::Resume => {}
                Existing::Refuse => {
                    let what = if RunDir::at(&dir).is_run() { "holds a run" } else { "is not empty" };
                    return Err(Error::Config(format!(
                        "--out {} {what}; choose a new directory, continue its training with `hamos train \
                         --resume --out {0}`, or replace it with --force",
                        dir.display()
                    )));
                }
                Existing::Clear => {
                    if !RunDir::at(&dir).is_run() {
                        return Err(Error::Config(format!(
                            "--force: {} is not empty and not a run directory (no config.toml, VERSION, \
                             diagnostics.jsonl or checkpoints/); not clearing it",
                            dir.display()
                        )));
                    }
                    clear(&dir)?;
                    eprintln!("--force: cleared {}", dir.display());
                }
            }
        } else if existing == Existing::Resume {
            return Err(Error::Config(format!("--resume: {} holds no run to resume", dir.display())));
        } else if dir.exists() && !dir.is_dir() {
            return Err(Error::Config(format!("--out {} is a file, not a directory", dir.display())));
        }
        RunDir::create(Some(dir), name)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join(Self::CONFIG)
    }

    /// `diagnostics.jsonl`.
    pub fn diagnostics_file(&self) -> PathBuf {
        self.root.join(Self::DIAGNOSTICS)
    }

    /// `metrics.json`.
    pub fn metrics_file(&self) -> PathBuf {
        self.root.join(Self::METRICS)
    }

    /// `report.md`.
    pub fn report_file(&self) -> PathBuf {
        self.root.join(Self::REPORT)
    }

    /// `checkpoints/`.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(Self::CHECKPOINTS)
    }

    /// `checkpoints/<model>.safetensors`: the checkpoint of fine-tuning `model` (or of the
    /// pretrained classifier, [`RunDir::PRETRAINED`]).
    pub fn checkpoint(&self, model: &str) -> PathBuf {
        self.checkpoints_dir().join(format!("{model}.safetensors"))
    }

    /// `scores/`: the raw scores, `scores/<model>/<scorer>/<set>.npy`.
    pub fn scores_dir(&self) -> PathBuf {
        self.root.join("scores")
    }

    /// `plots/`.
    pub fn plots_dir(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// Whether the folder looks like a run directory (a config, a version, diagnostics or
    /// checkpoints in it).
    pub fn is_run(&self) -> bool {
        RUN_MARKERS.iter().any(|m| self.root.join(m).exists())
    }

    /// Writes `config.toml` and `VERSION`.
    pub fn write_provenance(&self, config: &RunConfig) -> Result<()> {
        let write = |path: PathBuf, text: String| {
            std::fs::write(&path, text).map_err(|source| Error::Io { op: "writing", path, source })
        };
        write(self.config_file(), config.to_toml()?)?;
        write(self.root.join(Self::VERSION), format!("hamos {}\n", env!("CARGO_PKG_VERSION")))
    }
}

/// Files one of which marks a directory as a run directory.
const RUN_MARKERS: [&str; 4] = [RunDir::CONFIG, RunDir::VERSION, RunDir::DIAGNOSTICS, RunDir::CHECKPOINTS];

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// Whether `dir` holds a file anywhere below it (empty folders do not count).
fn holds_files(dir: &Path) -> Result<bool> {
    for entry in std::fs::read_dir(dir).map_err(io("reading", dir))? {
        let entry = entry.map_err(io("reading", dir))?;
        let kind = entry.file_type().map_err(io("reading", &entry.path()))?;
        if !kind.is_dir() || holds_files(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes everything inside `dir` (links themselves, never what they point to).
fn clear(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io("reading", dir))? {
        let path = entry.map_err(io("reading", dir))?.path();
        let kind = std::fs::symlink_metadata(&path).map_err(io("reading", &path))?.file_type();
        if kind.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io("clearing", &path))?;
        } else {
            std::fs::remove_file(&path).map_err(io("clearing", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Existing, RunDir};
    use std::path::PathBuf;

    fn prepare(dir: Option<PathBuf>, name: &str, existing: Existing) -> hamos_api::Result<PathBuf> {
        RunDir::prepare(dir, name, existing).map(|run| run.path().to_path_buf())
    }

    #[test]
    fn a_run_directory_is_refused_or_cleared_never_mixed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        // New and empty directories are fine.
        assert_eq!(prepare(Some(dir.clone()), "run", Existing::Refuse).unwrap(), dir);
        assert!(dir.join("checkpoints").is_dir());
        assert!(prepare(Some(dir.clone()), "run", Existing::Refuse).is_ok(), "empty folders only");
        std::fs::write(dir.join("config.toml"), "seed = 0\n").unwrap();
        std::fs::write(dir.join("checkpoints/hamos.safetensors"), "x").unwrap();
        let message = prepare(Some(dir.clone()), "run", Existing::Refuse).unwrap_err().to_string();
        assert!(message.contains("holds a run") && message.contains("--force"), "{message}");
        assert!(dir.join("config.toml").is_file());
        prepare(Some(dir.clone()), "run", Existing::Clear).unwrap();
        assert!(!dir.join("config.toml").exists() && !dir.join("checkpoints/hamos.safetensors").exists());
        assert!(dir.join("checkpoints").is_dir());
        let message =
            prepare(Some(tmp.path().join("none")), "train", Existing::Resume).unwrap_err().to_string();
        assert!(message.contains("no run to resume"), "{message}");
    }
}
