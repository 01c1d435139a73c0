//! `hamos train --resume`: the run's own config, and what a command line would change in it.

use std::path::Path;

use hamos_api::{Error, Result};

use super::RunDir;
use crate::config::RunConfig;

/// The config of `hamos train --resume`: the run's own `config.toml`, which `overrides` (and
/// `HAMOS_` variables) may restate but not change; `--config` is refused. Errors also when the
/// checkpoint to continue from is missing.
pub fn resume_config(
    dir: &Path,
    file: Option<&Path>,
    overrides: Vec<String>,
    label: impl Fn(&RunConfig) -> String,
) -> Result<RunConfig> {
    let run_dir = RunDir::at(dir);
    if let Some(file) = file {
        return Err(Error::Config(format!(
            "--resume continues with the run's own {}; drop --config {}",
            run_dir.config_file().display(),
            file.display()
        )));
    }
    let saved = run_dir.config_file();
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
    let checkpoint = run_dir.checkpoint(&label(&run));
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
