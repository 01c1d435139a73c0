//! Where a config comes from, and how the layers combine.
//!
//! Layers, in increasing priority: the code defaults (the paper's Table 4), a base (a binary's
//! built-in preset), a TOML file, `HAMOS_` environment variables, `--set` overrides. Tables merge
//! key by key at every depth; arrays and scalars replace. A *tagged* section (a plugin section,
//! tagged by `kind`, or `data.train`/`data.test`, tagged by `format`) starts afresh when a layer
//! changes its tag: it then holds only the fields given with the new tag, in that layer or later,
//! and the new plugin's defaults fill the rest. A field that the new kind lacks is therefore an
//! error only when it was given for that kind, and the error says which kinds own it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::{Table, Value};

use hamos_api::registry::{find_plugin, PluginKind};
use hamos_api::{Error, Result};

use super::{diagnose, DataConfig, RunConfig, TrainConfig};

/// `HAMOS_` environment variables that are not config fields (after the prefix): the data and
/// cache folders, and the variables of the repository's scripts (`scripts/*.sh`), which a user
/// may have exported while running a job.
pub const NON_CONFIG_ENV: [&str; 10] = [
    "data_dir",
    "cache_dir",
    "torch_full",
    "torch_venv",
    "tch_libtorch_lib",
    "cuda_crates",
    "cuda_venv",
    "data_sources",
    "fixture_venv",
    "bin",
];

/// The plugins a run uses when the config names none.
pub(super) const DEFAULT_PLUGINS: [(PluginKind, &str); 6] = [
    (PluginKind::Model, "small_cnn"),
    (PluginKind::Sampler, "hmc"),
    (PluginKind::Energy, "knn"),
    (PluginKind::Barrier, "vmf_kde"),
    (PluginKind::Loss, "cider"),
    (PluginKind::Scorer, "knn"),
];

/// Sections chosen by a tag, and the tag's name.
const TAGGED: [(&str, &str); 8] = [
    ("model", "kind"),
    ("sampler", "kind"),
    ("energy", "kind"),
    ("barrier", "kind"),
    ("loss", "kind"),
    ("scorer", "kind"),
    ("data.train", "format"),
    ("data.test", "format"),
];

/// Where a config comes from, in increasing priority.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// TOML text layered over the code defaults before `file` (e.g. a binary's built-in preset).
    pub base: Option<String>,
    /// A TOML file; it must exist.
    pub file: Option<PathBuf>,
    /// Read `HAMOS_`-prefixed environment variables (`__` separates sections).
    pub env: bool,
    /// `section.field=value` overrides; values parse as TOML, else as strings.
    pub overrides: Vec<String>,
}

/// The merged layers: values and, for every leaf, the source that set it.
pub(super) struct Merged {
    pub table: Table,
    pub origins: BTreeMap<String, String>,
}

impl ConfigSources {
    /// The merged layers as one TOML table, before plugin names and fields are checked.
    pub fn merged(&self) -> Result<Table> {
        Ok(self.merge()?.table)
    }

    pub(super) fn merge(&self) -> Result<Merged> {
        let mut merged = Merged { table: code_defaults()?, origins: BTreeMap::new() };
        if let Some(text) = &self.base {
            let table: Table =
                toml::from_str(text).map_err(|e| Error::Config(format!("base config: {}", one_line(&e))))?;
            merged.apply(&table, "the base config");
        }
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                op: "reading config",
                path: path.clone(),
                source: if path.is_file() {
                    source
                } else {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")
                },
            })?;
            let table: Table = toml::from_str(&text)
                .map_err(|e| Error::Config(format!("{}: {}", path.display(), one_line(&e))))?;
            merged.apply(&table, &path.display().to_string());
        }
        if self.env {
            let mut vars: Vec<(String, String)> = std::env::vars()
                .filter_map(|(key, value)| {
                    let rest =
                        key.get(..6).filter(|p| p.eq_ignore_ascii_case("HAMOS_")).map(|_| &key[6..])?;
                    let rest = rest.to_ascii_lowercase();
                    (!rest.is_empty() && !NON_CONFIG_ENV.contains(&rest.as_str())).then_some((key, value))
                })
                .collect();
            vars.sort();
            let mut layer = Table::new();
            for (key, raw) in &vars {
                let path: Vec<String> =
                    key[6..].to_ascii_lowercase().split("__").map(str::to_string).collect();
                if path.iter().any(String::is_empty) {
                    return Err(Error::Config(format!("environment variable {key}: empty section name")));
                }
                insert_path(&mut layer, &path, parse_value(raw), key)?;
            }
            merged.apply_each(&layer, |path| {
                vars.iter()
                    .find(|(key, _)| key[6..].to_ascii_lowercase().replace("__", ".") == path)
                    .map_or_else(|| "the environment".to_string(), |(key, _)| format!("environment {key}"))
            });
        }
        if !self.overrides.is_empty() {
            let mut layer = Table::new();
            let mut given = Vec::new();
            for assignment in &self.overrides {
                let (key, value) = parse_override(assignment)?;
                let path: Vec<String> = key.split('.').map(str::to_string).collect();
                insert_path(&mut layer, &path, value, assignment)?;
                given.push((key, assignment.clone()));
            }
            merged.apply_each(&layer, |path| {
                given
                    .iter()
                    .rev()
                    .find(|(key, _)| path == key || path.starts_with(&format!("{key}.")))
                    .map_or_else(|| "--set".to_string(), |(_, a)| format!("--set {a}"))
            });
        }
        Ok(merged)
    }

    /// Loads, checks plugin names and fields, deserializes and validates the run config.
    pub fn load(&self) -> Result<RunConfig> {
        let merged = self.merge()?;
        diagnose::check_top_level(&merged)?;
        for kind in PluginKind::ALL {
            diagnose::check_plugin_section(kind, &merged)?;
        }
        // figment's errors carry the full key path (list indices included) and serde's message
        // with the expected type; `locate_fault` finds the field when an error has no path.
        let figment = figment::Figment::from(figment::providers::Serialized::defaults(&merged.table));
        let config: RunConfig = match figment.extract() {
            Ok(config) => config,
            Err(error) => match diagnose::figment_fault(&merged, &error) {
                Some(fault) => return Err(fault),
                None => return Err(diagnose::locate_fault(&merged, &one_line(&error.kind))?),
            },
        };
        config.validate()?;
        Ok(config)
    }
}

impl Merged {
    fn apply(&mut self, layer: &Table, origin: &str) {
        self.apply_each(layer, |_| origin.to_string());
    }

    /// Merges `layer`, recording `origin(path)` for every leaf it sets.
    fn apply_each(&mut self, layer: &Table, origin: impl Fn(&str) -> String) {
        merge_into(&mut self.table, layer, "", &mut self.origins, &origin);
    }
}

fn merge_into(
    into: &mut Table,
    layer: &Table,
    prefix: &str,
    origins: &mut BTreeMap<String, String>,
    origin: &dyn Fn(&str) -> String,
) {
    for (key, value) in layer {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        match (into.get_mut(key), value) {
            (Some(Value::Table(current)), Value::Table(new)) => {
                let tag = TAGGED.iter().find(|(section, _)| *section == path).map(|(_, tag)| *tag);
                let swapped =
                    tag.is_some_and(|tag| new.get(tag).is_some_and(|t| current.get(tag) != Some(t)));
                if swapped {
                    // A new kind (or format): the section starts afresh from this layer.
                    current.clear();
                    origins.retain(|p, _| !p.starts_with(&format!("{path}.")));
                }
                merge_into(current, new, &path, origins, origin);
            }
            (_, value) => {
                origins.retain(|p, _| !p.starts_with(&format!("{path}.")));
                record_leaves(value, &path, origins, origin);
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

fn record_leaves(
    value: &Value,
    path: &str,
    origins: &mut BTreeMap<String, String>,
    origin: &dyn Fn(&str) -> String,
) {
    match value {
        Value::Table(table) => {
            for (key, value) in table {
                record_leaves(value, &format!("{path}.{key}"), origins, origin);
            }
        }
        _ => {
            origins.insert(path.to_string(), origin(path));
        }
    }
}

/// The code defaults: Table 4's schedule, the default data sets, each plugin section with only
/// its default `kind` (the plugin's own defaults fill the rest when it is read).
pub(super) fn code_defaults() -> Result<Table> {
    #[derive(serde::Serialize)]
    struct Defaults {
        seed: u64,
        backend: &'static str,
        device: &'static str,
        threads: usize,
        train: TrainConfig,
        data: DataConfig,
    }
    let defaults = Defaults {
        seed: 0,
        backend: "candle",
        device: "cpu",
        threads: 0,
        train: TrainConfig::default(),
        data: DataConfig::default(),
    };
    let mut table = Table::try_from(defaults).map_err(|e| Error::Config(format!("default config: {e}")))?;
    for (kind, name) in DEFAULT_PLUGINS {
        let mut section = Table::new();
        section.insert("kind".into(), Value::String(name.into()));
        table.insert(kind.section().into(), Value::Table(section));
    }
    Ok(table)
}

/// The default config of plugin `name` of `kind` (without its `kind`), if registered.
pub(super) fn plugin_defaults(kind: PluginKind, name: &str) -> Option<Table> {
    let mut table = find_plugin(kind, name).ok().and_then(|p| (p.default_config)().ok())?;
    table.remove("kind");
    Some(table)
}

fn insert_path(table: &mut Table, path: &[String], value: Value, source: &str) -> Result<()> {
    let (last, parents) = path.split_last().ok_or_else(|| Error::Config(format!("`{source}`: empty key")))?;
    let mut at = table;
    for (depth, part) in parents.iter().enumerate() {
        let entry = at.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
        at = match entry {
            Value::Table(next) => next,
            _ => {
                return Err(Error::Config(format!(
                    "`{source}`: `{}` is given both as a value and as a section",
                    path[..=depth].join(".")
                )))
            }
        };
    }
    at.insert(last.clone(), value);
    Ok(())
}

/// A value as TOML (`0.05`, `true`, `[1, 2]`, `"x"`), else the raw text as a string.
fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.trim().to_string()))
}

fn parse_override(assignment: &str) -> Result<(String, Value)> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| Error::Config(format!("--set `{assignment}`: expected `section.field=value`")))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(Error::Config(format!("--set `{assignment}`: `{key}` is not a dotted key")));
    }
    Ok((key.to_string(), parse_value(raw)))
}

/// An error's message on one line.
pub(crate) fn one_line(error: &dyn std::fmt::Display) -> String {
    error.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
