//! `hamos table`: the paper-style table of several runs (seeds, or any repeated runs): mean and
//! sample standard deviation of each metric per model x scorer x data set, from the runs'
//! `metrics.json` files; by default the near-OOD, far-OOD and overall averages side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};

use super::evaluate::{MetricRecord, AVERAGE, FAR_AVERAGE, NEAR_AVERAGE};

/// Mean and sample standard deviation of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`n - 1` in the denominator); `None` for a single run.
    pub std: Option<f64>,
}

impl MeanStd {
    /// Of `values` (at least one).
    pub fn of(values: &[f64]) -> MeanStd {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = (values.len() > 1)
            .then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        MeanStd { mean, std }
    }

    fn percent(&self) -> String {
        match self.std {
            Some(std) => format!("{:.2} ± {:.2}", 100.0 * self.mean, 100.0 * std),
            None => format!("{:.2} ± n/a", 100.0 * self.mean),
        }
    }
}

/// One row of the aggregated table.
#[derive(Debug, Clone)]
pub struct AggregateRow {
    /// Model name.
    pub model: String,
    /// Scorer name.
    pub scorer: String,
    /// Data set (or `average`, `near_average`, `far_average`).
    pub dataset: String,
    /// FPR95 over the runs.
    pub fpr95: MeanStd,
    /// OpenOOD's FPR@95 over the runs.
    pub fpr95_openood: MeanStd,
    /// AUROC over the runs.
    pub auroc: MeanStd,
    /// ID accuracy over the runs.
    pub id_acc: MeanStd,
    /// How many runs had this record.
    pub runs: usize,
}

/// The records of `dir/metrics.json` (a run directory or an evaluation folder), or the file
/// itself when `dir` is one.
pub fn read_records(dir: &Path) -> Result<Vec<MetricRecord>> {
    let path: PathBuf = if dir.is_dir() { crate::RunDir::at(dir).metrics_file() } else { dir.to_path_buf() };
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        op: "reading metrics (give run directories of `hamos run` or their metrics.json)",
        path: path.clone(),
        source,
    })?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Data(format!("{}: not JSON ({e})", path.display())))?;
    serde_json::from_value(json["records"].clone()).map_err(|e| {
        Error::Data(format!("{}: `records` is not a list of metric records ({e})", path.display()))
    })
}

/// Aggregates the records of several runs; rows keep the first run's order. A row present in
/// only some runs is aggregated over those and says so in [`AggregateRow::runs`].
pub fn aggregate(runs: &[Vec<MetricRecord>]) -> Result<Vec<AggregateRow>> {
    if runs.is_empty() {
        return Err(Error::Data("no runs to aggregate".into()));
    }
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for r in runs.iter().flatten() {
        let key = (r.model.clone(), r.scorer.clone(), r.dataset.clone());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut rows = Vec::with_capacity(keys.len());
    for (model, scorer, dataset) in keys {
        let found: Vec<&MetricRecord> = runs
            .iter()
            .filter_map(|run| {
                run.iter().find(|r| r.model == model && r.scorer == scorer && r.dataset == dataset)
            })
            .collect();
        let stat = |f: fn(&MetricRecord) -> f64| MeanStd::of(&found.iter().map(|r| f(r)).collect::<Vec<_>>());
        rows.push(AggregateRow {
            fpr95: stat(|r| r.fpr95),
            fpr95_openood: stat(|r| r.fpr95_openood),
            auroc: stat(|r| r.auroc),
            id_acc: stat(|r| r.id_acc),
            runs: found.len(),
            model,
            scorer,
            dataset,
        });
    }
    Ok(rows)
}

/// The average columns of the default table: dataset of the record, heading.
const AVERAGE_COLUMNS: [(&str, &str); 3] = [(NEAR_AVERAGE, "near"), (FAR_AVERAGE, "far"), (AVERAGE, "all")];

/// The table in Markdown, percent, `mean ± std`: per model x scorer the averages over the
/// near-OOD sets, the far-OOD sets and all sets side by side (FPR95, FPR95 (OpenOOD), AUROC
/// each, `-` where the runs have no such record), then the ID accuracy; with `per_set`, also
/// every data set and average as a row of its own. A cell aggregated over fewer than
/// `total_runs` runs says how many.
pub fn table(rows: &[AggregateRow], total_runs: usize, per_set: bool) -> String {
    let mut out = format!(
        "FPR95 / FPR95 (OpenOOD) / AUROC / ID acc in percent, mean ± sample std over {} \
         (lower FPR95, higher AUROC are better; `n/a`: no spread from one run); near, far and all \
         are the averages over the near-OOD, far-OOD and all OOD sets.\n\n| model | scorer |",
        super::report::plural(total_runs, "run")
    );
    for (_, label) in AVERAGE_COLUMNS {
        let _ = write!(out, " {label} FPR95 | {label} FPR95 (OpenOOD) | {label} AUROC |");
    }
    out.push_str(" ID acc |\n|---|---|");
    out.push_str(&"---:|---:|---:|".repeat(AVERAGE_COLUMNS.len()));
    out.push_str("---:|\n");
    let partial = |r: &AggregateRow| {
        if r.runs < total_runs {
            format!(" ({})", super::report::plural(r.runs, "run"))
        } else {
            String::new()
        }
    };
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !pairs.contains(&(r.model.as_str(), r.scorer.as_str())) {
            pairs.push((&r.model, &r.scorer));
        }
    }
    for (model, scorer) in pairs {
        let find = |dataset: &str| {
            rows.iter().find(|r| r.model == model && r.scorer == scorer && r.dataset == dataset)
        };
        if AVERAGE_COLUMNS.iter().all(|(dataset, _)| find(dataset).is_none()) {
            continue;
        }
        let _ = write!(out, "| {model} | {scorer} |");
        let mut id_acc = None;
        for (dataset, _) in AVERAGE_COLUMNS {
            match find(dataset) {
                Some(r) => {
                    let _ = write!(
                        out,
                        " {}{} | {} | {} |",
                        r.fpr95.percent(),
                        partial(r),
                        r.fpr95_openood.percent(),
                        r.auroc.percent()
                    );
                    id_acc = id_acc.or(Some(r));
                }
                None => out.push_str(" - | - | - |"),
            }
        }
        let acc = id_acc.map_or_else(|| "-".to_string(), |r| format!("{}{}", r.id_acc.percent(), partial(r)));
        let _ = writeln!(out, " {acc} |");
    }
    if per_set {
        out.push_str(
            "\n| model | scorer | data set | FPR95 | FPR95 (OpenOOD) | AUROC | ID acc |\n\
             |---|---|---|---:|---:|---:|---:|\n",
        );
        for r in rows {
            let _ = writeln!(
                out,
                "| {} | {} | {}{} | {} | {} | {} | {} |",
                r.model,
                r.scorer,
                r.dataset,
                partial(r),
                r.fpr95.percent(),
                r.fpr95_openood.percent(),
                r.auroc.percent(),
                r.id_acc.percent()
            );
        }
    }
    out
}

/// The runs of `hamos table`: each argument's records, once per distinct `metrics.json`, and
/// warnings for an argument that repeats another and for runs whose `config.toml` differ beyond
/// the seed (they are averaged all the same).
pub fn read_runs(paths: &[PathBuf]) -> Result<(Vec<Vec<MetricRecord>>, Vec<String>)> {
    let mut warnings = Vec::new();
    let mut seen: Vec<(PathBuf, &Path)> = Vec::new();
    let mut records = Vec::new();
    let mut configs: Vec<(&Path, toml::Table)> = Vec::new();
    let mut unconfigured = Vec::new();
    for path in paths {
        let metrics = if path.is_dir() { crate::RunDir::at(path).metrics_file() } else { path.clone() };
        let canonical = std::fs::canonicalize(&metrics).unwrap_or_else(|_| metrics.clone());
        if let Some((_, first)) = seen.iter().find(|(c, _)| *c == canonical) {
            warnings.push(format!("{} is the same run as {}: counted once", path.display(), first.display()));
            continue;
        }
        seen.push((canonical.clone(), path));
        records.push(read_records(path)?);
        match run_config_table(&canonical) {
            Some(config) => configs.push((path, config)),
            None => unconfigured.push(path.display().to_string()),
        }
    }
    if !unconfigured.is_empty() && paths.len() > 1 {
        warnings.push(format!(
            "no config.toml beside {}: their configs are not compared",
            unconfigured.join(", ")
        ));
    }
    if let Some(((first, reference), rest)) = configs.split_first() {
        for (path, config) in rest {
            let differ = differing_keys(reference, config);
            if !differ.is_empty() {
                warnings.push(format!(
                    "{} differs from {} beyond the seed: {}",
                    path.display(),
                    first.display(),
                    differ.join(", ")
                ));
            }
        }
    }
    Ok((records, warnings))
}

/// The `config.toml` of the run a `metrics.json` belongs to: beside it, or one folder up for
/// the folders of `hamos eval`.
fn run_config_table(metrics: &Path) -> Option<toml::Table> {
    let folder = metrics.parent()?;
    let file = [crate::RunDir::at(folder).config_file(), crate::RunDir::at(folder.parent()?).config_file()]
        .into_iter()
        .find(|f| f.is_file())?;
    toml::from_str(&std::fs::read_to_string(file).ok()?).ok()
}

/// Dotted keys other than `seed` whose values differ, as `key = b (a)`.
fn differing_keys(a: &toml::Table, b: &toml::Table) -> Vec<String> {
    fn flatten(table: &toml::Table, prefix: &str, out: &mut Vec<(String, String)>) {
        for (key, value) in table {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            match value {
                toml::Value::Table(inner) => flatten(inner, &path, out),
                other => out.push((path, canonical(other))),
            }
        }
    }
    // Older versions wrote f32 fields with their f64 expansion (`0.28600001335144043`): floats
    // compare at f32 precision, so the same setting is not reported as a difference.
    fn canonical(value: &toml::Value) -> String {
        match value {
            toml::Value::Float(f) => format!("{}", *f as f32),
            toml::Value::Array(items) => {
                format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(", "))
            }
            other => other.to_string(),
        }
    }
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    flatten(a, "", &mut fa);
    flatten(b, "", &mut fb);
    let get =
        |list: &[(String, String)], key: &str| list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let mut keys: Vec<String> =
        fa.iter().chain(&fb).map(|(k, _)| k.clone()).filter(|k| k != "seed").collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| {
            let (x, y) = (get(&fa, &key), get(&fb, &key));
            (x != y).then(|| {
                let show = |v: Option<String>| v.unwrap_or_else(|| "unset".into());
                format!("{key} = {} ({})", show(y), show(x))
            })
        })
        .collect()
}
