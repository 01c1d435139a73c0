//! `hamos table`: the paper-style table of several runs (seeds, or any repeated runs): mean and
//! sample standard deviation of each metric per model x scorer x data set, from the runs'
//! `metrics.json` files; by default the near-OOD, far-OOD and overall averages side by side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};

use super::evaluate::{MetricRecord, AVERAGE, FAR_AVERAGE, NEAR_AVERAGE};

/// Mean and sample standard deviation (0 for a single run) of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (`n - 1` in the denominator).
    pub std: f64,
}

impl MeanStd {
    /// Of `values` (at least one).
    pub fn of(values: &[f64]) -> MeanStd {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        MeanStd { mean, std: var.sqrt() }
    }

    fn percent(&self) -> String {
        format!("{:.2} ± {:.2}", 100.0 * self.mean, 100.0 * self.std)
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
    let path: PathBuf = if dir.is_dir() { dir.join("metrics.json") } else { dir.to_path_buf() };
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
        "FPR95 / FPR95 (OpenOOD) / AUROC / ID acc in percent, mean ± sample std over {total_runs} runs \
         (lower FPR95, higher AUROC are better); near, far and all are the averages over the \
         near-OOD, far-OOD and all OOD sets.\n\n| model | scorer |"
    );
    for (_, label) in AVERAGE_COLUMNS {
        let _ = write!(out, " {label} FPR95 | {label} FPR95 (OpenOOD) | {label} AUROC |");
    }
    out.push_str(" ID acc |\n|---|---|");
    out.push_str(&"---:|---:|---:|".repeat(AVERAGE_COLUMNS.len()));
    out.push_str("---:|\n");
    let partial = |r: &AggregateRow| {
        if r.runs < total_runs {
            format!(" ({} runs)", r.runs)
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
