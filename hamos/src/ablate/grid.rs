//! The grid of an ablation: a base config, the fields that vary (their product is the set of
//! settings), the seeds and the models each cell fine-tunes; from a TOML file, from `--vary`
//! flags, or both (the flags add axes and override the file's seeds, models and scorer).

use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::Base;

/// The fine-tuned models an ablation cell trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelChoice {
    /// Fine-tuning with synthesized outliers (the `hamos` model).
    Hamos,
    /// The same fine-tuning without outliers (the `<loss>_only` model).
    NoOutliers,
}

impl std::str::FromStr for ModelChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "hamos" => Ok(ModelChoice::Hamos),
            "no_outliers" => Ok(ModelChoice::NoOutliers),
            other => Err(Error::invalid("models", format!("`{other}`: use `hamos` or `no_outliers`"))),
        }
    }
}

/// The seeds of a grid file: a count (`seeds = 3` is 0, 1, 2) or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Seeds {
    /// Seeds `0..n`.
    Count(u64),
    /// These seeds.
    List(Vec<u64>),
}

impl Seeds {
    /// The seeds, in order.
    pub fn list(&self) -> Vec<u64> {
        match self {
            Seeds::Count(n) => (0..*n).collect(),
            Seeds::List(list) => list.clone(),
        }
    }
}

/// One varied field and its values (TOML values: strings, numbers, booleans).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// Dotted config key, as for `--set` (`sampler.kind`, `barrier.kappa`).
    pub key: String,
    /// Its values; each becomes `--set key=value` in its cells.
    pub values: Vec<toml::Value>,
}

/// An ablation grid as written in a TOML file (`hamos ablate --grid FILE`).
///
/// ```toml
/// base = "preset"                  # or "table4"
/// set = ["train.epochs=2"]          # overrides common to every cell
/// seeds = 3                         # 0, 1, 2 (or a list: [0, 4])
/// models = ["hamos", "no_outliers"]
/// [[vary]]
/// key = "loss.kind"
/// values = ["ce_only", "simclr", "supcon", "cider"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFile {
    /// What every cell's config starts from: `preset` (the shipped preset) or `table4`.
    #[serde(default = "preset")]
    pub base: String,
    /// A run config layered over the base, relative to the grid file.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// `key=value` overrides common to every cell, applied before the varied fields.
    #[serde(default)]
    pub set: Vec<String>,
    /// Seeds (default 3: 0, 1, 2).
    #[serde(default)]
    pub seeds: Option<Seeds>,
    /// The models each cell fine-tunes (default: `hamos` alone).
    #[serde(default)]
    pub models: Option<Vec<ModelChoice>>,
    /// The scorer of the table's rows (default `knn`, HamOS's scorer on the head; any scorer
    /// the cells evaluate, e.g. `knn_features`).
    #[serde(default)]
    pub scorer: Option<String>,
    /// The varied fields; settings are their product, the first axis varying slowest.
    #[serde(default)]
    pub vary: Vec<Axis>,
}

fn preset() -> String {
    "preset".into()
}

impl GridFile {
    /// Reads and parses `path`; `config` is resolved against the file's folder.
    pub fn read(path: &Path) -> Result<GridFile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            op: "reading the ablation grid",
            path: path.to_path_buf(),
            source,
        })?;
        let mut grid: GridFile = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), crate::config::one_line(&e))))?;
        if let Some(config) = &grid.config {
            if config.is_relative() {
                grid.config = Some(path.parent().unwrap_or(Path::new(".")).join(config));
            }
        }
        Ok(grid)
    }
}

/// One setting: the varied fields' values, as `(key, value)` in axis order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Setting(pub Vec<(String, String)>);

impl Setting {
    /// `key=value, key=value`, or `base` when nothing varies.
    pub fn label(&self) -> String {
        if self.0.is_empty() {
            return "base".into();
        }
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }

    /// The values alone (`hmc`, `hmc / 0.05`), or `base`: the short label of plots.
    pub fn short_label(&self) -> String {
        if self.0.is_empty() {
            return "base".into();
        }
        self.0.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(" / ")
    }

    /// The folder name of the setting's cells: the label with every character outside
    /// `[A-Za-z0-9._=-]` replaced by `_`, the pairs joined by `,`.
    pub fn folder(&self) -> String {
        if self.0.is_empty() {
            return "base".into();
        }
        let clean = |s: &str| -> String {
            s.chars().map(|c| if c.is_ascii_alphanumeric() || "._=-".contains(c) { c } else { '_' }).collect()
        };
        self.0.iter().map(|(k, v)| format!("{}={}", clean(k), clean(v))).collect::<Vec<_>>().join(",")
    }
}

/// One run of the grid: a setting at a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The setting.
    pub setting: Setting,
    /// The seed.
    pub seed: u64,
}

impl Cell {
    /// The cell's run directory under the ablation folder `root`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join("cells").join(self.setting.folder()).join(format!("seed-{}", self.seed))
    }

    /// `setting, seed N`.
    pub fn label(&self) -> String {
        format!("{}, seed {}", self.setting.label(), self.seed)
    }
}

/// A resolved ablation: where every cell's config comes from, the settings, seeds and models.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// The base of every cell's config.
    pub base: Base,
    /// A run config layered over the base.
    pub config: Option<PathBuf>,
    /// Overrides common to every cell.
    pub set: Vec<String>,
    /// The varied fields.
    pub axes: Vec<(String, Vec<String>)>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// The models each cell fine-tunes.
    pub models: Vec<ModelChoice>,
    /// The scorer of the table.
    pub scorer: String,
}

impl Grid {
    /// The grid of `file` (if any) with the command line's additions: `vary` (`key=v1,v2`)
    /// adds axes, `set` adds overrides after the file's, `seeds`, `models`, `scorer`, `base` and
    /// `config` replace the file's when given.
    pub fn resolve(file: Option<GridFile>, cli: GridArgs) -> Result<Grid> {
        let file = file.unwrap_or(GridFile {
            base: preset(),
            config: None,
            set: Vec::new(),
            seeds: None,
            models: None,
            scorer: None,
            vary: Vec::new(),
        });
        let base: Base = cli.base.as_deref().unwrap_or(&file.base).parse()?;
        let mut axes: Vec<(String, Vec<String>)> = file
            .vary
            .iter()
            .map(|axis| (axis.key.trim().to_string(), axis.values.iter().map(value_text).collect()))
            .collect();
        for entry in &cli.vary {
            let (key, values) = entry.split_once('=').ok_or_else(|| {
                Error::invalid("--vary", format!("`{entry}`: expected `section.field=value1,value2`"))
            })?;
            axes.push((key.trim().to_string(), values.split(',').map(|v| v.trim().to_string()).collect()));
        }
        for (key, values) in &axes {
            if key.is_empty() || key.split('.').any(str::is_empty) {
                return Err(Error::invalid("vary", format!("`{key}` is not a dotted config key")));
            }
            if values.is_empty() || values.iter().any(String::is_empty) {
                return Err(Error::invalid("vary", format!("`{key}` needs non-empty values")));
            }
            if axes.iter().filter(|(k, _)| k == key).count() > 1 {
                return Err(Error::invalid("vary", format!("`{key}` is varied twice")));
            }
            if key == "seed" {
                return Err(Error::invalid("vary", "vary the seeds with --seeds (or `seeds` in the grid)"));
            }
        }
        let seeds = cli.seeds.or(file.seeds).unwrap_or(Seeds::Count(3)).list();
        if seeds.is_empty() {
            return Err(Error::invalid("seeds", "the ablation needs at least one seed"));
        }
        let models = cli.models.or(file.models).unwrap_or_else(|| vec![ModelChoice::Hamos]);
        if models.is_empty() {
            return Err(Error::invalid("models", "name `hamos`, `no_outliers` or both"));
        }
        let mut set = file.set;
        set.extend(cli.set);
        Ok(Grid {
            base,
            config: cli.config.or(file.config),
            set,
            axes,
            seeds,
            models,
            scorer: cli.scorer.or(file.scorer).unwrap_or_else(|| "knn".into()),
        })
    }

    /// Every setting (the product of the axes, the first axis varying slowest).
    pub fn settings(&self) -> Vec<Setting> {
        let mut settings = vec![Setting(Vec::new())];
        for (key, values) in &self.axes {
            settings = settings
                .into_iter()
                .flat_map(|s| {
                    values.iter().map(move |v| {
                        let mut pairs = s.0.clone();
                        pairs.push((key.clone(), v.clone()));
                        Setting(pairs)
                    })
                })
                .collect();
        }
        settings
    }

    /// Every cell: each setting at each seed, setting by setting.
    pub fn cells(&self) -> Vec<Cell> {
        self.settings()
            .into_iter()
            .flat_map(|setting| self.seeds.iter().map(move |&seed| Cell { setting: setting.clone(), seed }))
            .collect()
    }

    /// The config of `cell`: the base, the grid's config file, the `HAMOS_` environment, the
    /// common overrides, the setting's values, then the seed.
    pub fn config(&self, cell: &Cell) -> Result<RunConfig> {
        let mut overrides = self.set.clone();
        overrides.extend(cell.setting.0.iter().map(|(k, v)| format!("{k}={v}")));
        overrides.push(format!("seed={}", cell.seed));
        crate::load_config_from(self.base, self.config.clone(), overrides)
    }

    /// The TOML that records this grid in the ablation folder (`ablation.toml`).
    pub fn to_toml(&self) -> Result<String> {
        let file = GridFile {
            base: match self.base {
                Base::Preset => "preset".into(),
                Base::Table4 => "table4".into(),
            },
            config: self.config.clone(),
            set: self.set.clone(),
            seeds: Some(Seeds::List(self.seeds.clone())),
            models: Some(self.models.clone()),
            scorer: Some(self.scorer.clone()),
            vary: self
                .axes
                .iter()
                .map(|(key, values)| Axis {
                    key: key.clone(),
                    values: values.iter().map(|v| toml::Value::String(v.clone())).collect(),
                })
                .collect(),
        };
        toml::to_string(&file).map_err(|e| Error::Config(format!("ablation grid: {e}")))
    }
}

/// The command line's part of a grid (see [`Grid::resolve`]).
#[derive(Debug, Clone, Default)]
pub struct GridArgs {
    /// `--base`.
    pub base: Option<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--set`.
    pub set: Vec<String>,
    /// `--vary`.
    pub vary: Vec<String>,
    /// `--seeds`/`--seed-list`.
    pub seeds: Option<Seeds>,
    /// `--models`.
    pub models: Option<Vec<ModelChoice>>,
    /// `--scorer`.
    pub scorer: Option<String>,
}

/// A TOML value as `--set` reads it: strings bare, everything else in TOML syntax.
fn value_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
