//! The output directory of `hamos run` and `hamos train`: never two runs mixed in one.
//!
//! A directory that holds any file is refused unless the job is told what to do with it:
//! `--resume` (training continues from the run's checkpoint, with the run's own `config.toml`)
//! or `--force` (the old run directory is cleared first; a non-empty directory that is not a run
//! directory is never cleared).

use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};

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

/// Files one of which marks a directory as a run directory.
const RUN_MARKERS: [&str; 4] = ["config.toml", "VERSION", "diagnostics.jsonl", "checkpoints"];

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

/// `dir` (else `runs/<UTC time>-<name>`), created with `checkpoints/`, after applying `existing`
/// to what it holds.
pub fn prepare(dir: Option<PathBuf>, name: &str, existing: Existing) -> Result<PathBuf> {
    let Some(dir) = dir else { return crate::rundir::create(None, name) };
    if dir.is_dir() && holds_files(&dir)? {
        match existing {
            Existing::Resume => {}
            Existing::Refuse => {
                let what = if RUN_MARKERS.iter().any(|m| dir.join(m).exists()) {
                    "holds a run"
                } else {
                    "is not empty"
                };
                return Err(Error::Config(format!(
                    "--out {} {what}; choose a new directory, continue its training with `hamos train \
                     --resume --out {0}`, or replace it with --force",
                    dir.display()
                )));
            }
            Existing::Clear => {
                if !RUN_MARKERS.iter().any(|m| dir.join(m).exists()) {
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
    crate::rundir::create(Some(dir), name)
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

/// The config of `hamos train --resume`: the run's own `config.toml`, which `overrides` (and
/// `HAMOS_` variables) may restate but not change; `--config` is refused. Errors also when the
/// checkpoint to continue from is missing.
pub fn resume_config(
    dir: &Path,
    file: Option<&Path>,
    overrides: Vec<String>,
    label: impl Fn(&RunConfig) -> String,
) -> Result<RunConfig> {
    if let Some(file) = file {
        return Err(Error::Config(format!(
            "--resume continues with the run's own {}; drop --config {}",
            dir.join("config.toml").display(),
            file.display()
        )));
    }
    let saved = dir.join("config.toml");
    if !saved.is_file() {
        return Err(Error::Config(format!(
            "--resume: {} has no config.toml, so there is no run to resume",
            dir.display()
        )));
    }
    let run = crate::ConfigSources { base: None, file: Some(saved.clone()), env: false, overrides: vec![] }
        .load()?;
    let asked =
        crate::ConfigSources { base: None, file: Some(saved.clone()), env: true, overrides }.load()?;
    let changed = differences(&run, &asked)?;
    if !changed.is_empty() {
        return Err(Error::Config(format!(
            "--resume continues the run with its own config.toml, but the command line or the HAMOS_ \
             environment changes {}; drop them, or start a new run",
            changed.join(", ")
        )));
    }
    let checkpoint = crate::train::checkpoint_path(dir, &label(&run));
    if !checkpoint.is_file() {
        return Err(Error::Config(format!(
            "--resume: no checkpoint {} (the run has not finished an epoch); start it again with \
             --force, or without --resume in a new directory",
            checkpoint.display()
        )));
    }
    Ok(run)
}

/// The dotted keys whose values differ between two configs, as `key = new (run: old)`.
pub fn differences(run: &RunConfig, other: &RunConfig) -> Result<Vec<String>> {
    let flat = |config: &RunConfig| -> Result<Vec<(String, String)>> {
        let table: toml::Table = toml::from_str(&config.to_toml()?)
            .map_err(|e| Error::Config(format!("reading back the config: {e}")))?;
        let mut out = Vec::new();
        flatten(&toml::Value::Table(table), String::new(), &mut out);
        Ok(out)
    };
    let (a, b) = (flat(run)?, flat(other)?);
    let lookup =
        |list: &[(String, String)], key: &str| list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let mut keys: Vec<&String> = a.iter().chain(&b).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter_map(|key| {
            let (old, new) = (lookup(&a, key), lookup(&b, key));
            (old != new).then(|| {
                format!(
                    "{key} = {} (run: {})",
                    new.unwrap_or_else(|| "unset".into()),
                    old.unwrap_or_else(|| "unset".into())
                )
            })
        })
        .collect())
}

fn flatten(value: &toml::Value, prefix: String, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(value, path, out);
            }
        }
        other => out.push((prefix, other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{prepare, Existing};

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
