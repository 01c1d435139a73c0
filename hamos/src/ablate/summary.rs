//! The ablation's outputs: per cell, its metric records and its sampler's diagnostics; per
//! setting and model, mean ± sample std over the seeds, as Markdown (`table.md`), CSV
//! (`table.csv`, and every cell's values in `cells.csv`) and the FPR95 plot (`fpr95.png`).

use std::fmt::Write as _;
use std::path::Path;

use hamos_api::{Error, Result};
use serde::Deserialize;

use super::grid::{Grid, ModelChoice, Setting};
use super::{CellOutcome, CellStatus};
use crate::eval::aggregate::{read_records, MeanStd};
use crate::eval::evaluate::{MetricRecord, FAR_AVERAGE, NEAR_AVERAGE};

/// A cell's sampler diagnostics over its HamOS fine-tuning steps (from `diagnostics.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerStats {
    /// Median milliseconds of synthesis per mini-batch (Table 9's Time).
    pub synthesis_ms: f64,
    /// Mean acceptance over steps (each step's mean over rounds).
    pub acceptance: f64,
    /// Mean barrier rejections per mini-batch (summed over rounds).
    pub barrier_rejections: f64,
    /// Mean angle in radians a chain moves per round (over steps and rounds).
    pub angular_step: f64,
    /// Steps that synthesized.
    pub steps: usize,
}

/// What the table reads of one complete cell.
#[derive(Debug, Clone)]
pub struct CellResult {
    /// Every metric record of the cell (`metrics.json`).
    pub records: Vec<MetricRecord>,
    /// The scorer of the table.
    pub scorer: String,
    /// The sampler's diagnostics, when the cell fine-tuned with outliers.
    pub sampler: Option<SamplerStats>,
}

/// The record of `model` (`hamos`, or the `<loss>_only` model) with `scorer` on `dataset`.
fn find<'a>(
    records: &'a [MetricRecord],
    model: ModelChoice,
    scorer: &str,
    dataset: &str,
) -> Option<&'a MetricRecord> {
    records.iter().find(|r| {
        let model_matches = match model {
            ModelChoice::Hamos => r.model == "hamos",
            ModelChoice::NoOutliers => r.model.ends_with("_only"),
        };
        model_matches && r.scorer == scorer && r.dataset == dataset
    })
}

impl CellResult {
    /// The near-OOD and far-OOD averages of `model` with the table's scorer.
    pub fn averages(&self, model: ModelChoice) -> (Option<&MetricRecord>, Option<&MetricRecord>) {
        (
            find(&self.records, model, &self.scorer, NEAR_AVERAGE),
            find(&self.records, model, &self.scorer, FAR_AVERAGE),
        )
    }

    /// One line for the progress output: near and far FPR95 and AUROC of each model.
    pub fn brief(&self) -> String {
        let mut parts = Vec::new();
        for model in [ModelChoice::Hamos, ModelChoice::NoOutliers] {
            if let (Some(near), Some(far)) = self.averages(model) {
                parts.push(format!(
                    "{} ({}) near FPR95 {:.2} AUROC {:.2}, far FPR95 {:.2} AUROC {:.2}",
                    near.model,
                    self.scorer,
                    100.0 * near.fpr95,
                    100.0 * near.auroc,
                    100.0 * far.fpr95,
                    100.0 * far.auroc
                ));
            }
        }
        if parts.is_empty() {
            return format!("no near/far records for scorer `{}`", self.scorer);
        }
        parts.join("; ")
    }
}

#[derive(Deserialize)]
struct StepLine {
    model: String,
    phase: String,
    #[serde(default)]
    acceptance: Option<f64>,
    #[serde(default)]
    synthesis_ms: f64,
    #[serde(default)]
    rounds: Vec<RoundLine>,
}

#[derive(Deserialize)]
struct RoundLine {
    barrier_rejections: usize,
    mean_angular_step: f64,
}

/// The sampler diagnostics of the `hamos` model's fine-tuning steps in `path`.
fn sampler_stats(path: &Path) -> Result<Option<SamplerStats>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { op: "reading diagnostics", path: path.to_path_buf(), source }),
    };
    let (mut times, mut acceptance, mut rejections, mut angles) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let step: StepLine = serde_json::from_str(line)
            .map_err(|e| Error::Data(format!("{} line {}: {e}", path.display(), number + 1)))?;
        if step.model != "hamos" || step.phase != "finetune" || step.rounds.is_empty() {
            continue;
        }
        times.push(step.synthesis_ms);
        acceptance.extend(step.acceptance);
        rejections.push(step.rounds.iter().map(|r| r.barrier_rejections as f64).sum::<f64>());
        angles.extend(step.rounds.iter().map(|r| r.mean_angular_step).filter(|a| a.is_finite()));
    }
    if times.is_empty() {
        return Ok(None);
    }
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    times.sort_by(f64::total_cmp);
    Ok(Some(SamplerStats {
        synthesis_ms: times[times.len() / 2],
        acceptance: mean(&acceptance),
        barrier_rejections: mean(&rejections),
        angular_step: mean(&angles),
        steps: times.len(),
    }))
}

/// The results of the complete cell in `dir`, for the table's `scorer`.
pub fn read_cell(dir: &Path, scorer: &str) -> Result<CellResult> {
    Ok(CellResult {
        records: read_records(dir)?,
        scorer: scorer.to_string(),
        sampler: sampler_stats(&crate::RunDir::at(dir).diagnostics_file())?,
    })
}

/// A table column: name in CSV, heading in Markdown, how to read it from a record.
type Column = (&'static str, &'static str, fn(&MetricRecord) -> f64);
/// A sampler column: name in CSV, heading in Markdown, decimals, how to read it.
type SamplerColumn = (&'static str, &'static str, usize, fn(&SamplerStats) -> f64);

/// The metrics of a row, each read from a near or far average record.
const METRICS: [Column; 3] =
    [("fpr95", "FPR95", |r| r.fpr95), ("auroc", "AUROC", |r| r.auroc), ("aupr_in", "AUPR-In", |r| r.aupr_in)];

/// The sampler columns.
const SAMPLER_COLUMNS: [SamplerColumn; 4] = [
    ("synthesis_ms", "synthesis ms / batch", 1, |s| s.synthesis_ms),
    ("acceptance", "acceptance", 3, |s| s.acceptance),
    ("barrier_rejections", "barrier rejections / batch", 1, |s| s.barrier_rejections),
    ("angular_step", "angle / round (rad)", 3, |s| s.angular_step),
];

/// One row of the table: a setting and a model over the seeds.
struct Row<'a> {
    setting: &'a Setting,
    model_name: String,
    /// Seeds with results, of the grid's seeds.
    seeds: usize,
    /// Per metric: near and far values, one per seed.
    near: Vec<Vec<f64>>,
    far: Vec<Vec<f64>>,
    id_acc: Vec<f64>,
    sampler: Vec<SamplerStats>,
}

fn stat(values: &[f64]) -> Option<MeanStd> {
    (!values.is_empty()).then(|| MeanStd::of(values))
}

fn show(value: Option<MeanStd>, scale: f64, digits: usize) -> String {
    match value {
        None => "-".into(),
        Some(MeanStd { mean, std: Some(std) }) => {
            format!("{:.digits$} ± {:.digits$}", scale * mean, scale * std)
        }
        Some(MeanStd { mean, std: None }) => format!("{:.digits$} ± n/a", scale * mean),
    }
}

fn csv_pair(value: Option<MeanStd>) -> String {
    match value {
        None => ",".into(),
        Some(MeanStd { mean, std }) => format!("{mean},{}", std.map_or(String::new(), |s| s.to_string())),
    }
}

/// Writes `table.md`, `table.csv`, `cells.csv` and `fpr95.png` into `root` from the complete
/// cells of `outcomes`, and returns the Markdown table.
pub fn write_outputs(root: &Path, grid: &Grid, outcomes: &[CellOutcome]) -> Result<String> {
    let mut results: Vec<(&CellOutcome, CellResult)> = Vec::new();
    let mut unreadable = Vec::new();
    for outcome in outcomes.iter().filter(|o| !matches!(o.status, CellStatus::Failed(_))) {
        match read_cell(&outcome.dir, &grid.scorer) {
            Ok(result) => results.push((outcome, result)),
            Err(e) => unreadable.push(format!("{}: {e}", outcome.cell.label())),
        }
    }
    let keys: Vec<&str> = grid.axes.iter().map(|(k, _)| k.as_str()).collect();
    let mut cells_csv = keys.iter().map(|k| format!("{k},")).collect::<String>();
    cells_csv.push_str(
        "seed,model,scorer,near_fpr95,near_auroc,near_aupr_in,far_fpr95,far_auroc,far_aupr_in,id_acc",
    );
    for (name, ..) in SAMPLER_COLUMNS {
        let _ = write!(cells_csv, ",{name}");
    }
    cells_csv.push('\n');
    let settings = grid.settings();
    let mut rows: Vec<Row> = Vec::new();
    for setting in &settings {
        for &model in &grid.models {
            let mut row = Row {
                setting,
                model_name: String::new(),
                seeds: 0,
                near: vec![Vec::new(); METRICS.len()],
                far: vec![Vec::new(); METRICS.len()],
                id_acc: Vec::new(),
                sampler: Vec::new(),
            };
            for (outcome, result) in results.iter().filter(|(o, _)| &o.cell.setting == setting) {
                let (Some(near), Some(far)) = result.averages(model) else { continue };
                row.model_name = near.model.clone();
                row.seeds += 1;
                for (i, (_, _, read)) in METRICS.iter().enumerate() {
                    row.near[i].push(read(near));
                    row.far[i].push(read(far));
                }
                row.id_acc.push(near.id_acc);
                let sampler = result.sampler.filter(|_| model == ModelChoice::Hamos);
                row.sampler.extend(sampler);
                for (_, value) in &setting.0 {
                    let _ = write!(cells_csv, "{value},");
                }
                let _ = write!(cells_csv, "{},{},{},", outcome.cell.seed, near.model, grid.scorer);
                for record in [near, far] {
                    for (_, _, read) in METRICS {
                        let _ = write!(cells_csv, "{},", read(record));
                    }
                }
                let _ = write!(cells_csv, "{}", near.id_acc);
                for (_, _, _, read) in SAMPLER_COLUMNS {
                    let _ = write!(cells_csv, ",{}", sampler.map_or(String::new(), |s| read(&s).to_string()));
                }
                cells_csv.push('\n');
            }
            if row.model_name.is_empty() {
                row.model_name = match model {
                    ModelChoice::Hamos => "hamos".into(),
                    ModelChoice::NoOutliers => "no outliers".into(),
                };
            }
            rows.push(row);
        }
    }
    let with_sampler = grid.models.contains(&ModelChoice::Hamos);
    let markdown = markdown(grid, &keys, &rows, with_sampler, outcomes, &unreadable);
    let mut table_csv = keys.iter().map(|k| format!("{k},")).collect::<String>();
    table_csv.push_str("model,scorer,seeds");
    for group in ["near", "far"] {
        for (name, ..) in METRICS {
            let _ = write!(table_csv, ",{group}_{name}_mean,{group}_{name}_std");
        }
    }
    table_csv.push_str(",id_acc_mean,id_acc_std");
    for (name, ..) in SAMPLER_COLUMNS {
        let _ = write!(table_csv, ",{name}_mean,{name}_std");
    }
    table_csv.push('\n');
    for row in &rows {
        for (_, value) in &row.setting.0 {
            let _ = write!(table_csv, "{value},");
        }
        let _ = write!(table_csv, "{},{},{}", row.model_name, grid.scorer, row.seeds);
        for values in row.near.iter().chain(&row.far) {
            let _ = write!(table_csv, ",{}", csv_pair(stat(values)));
        }
        let _ = write!(table_csv, ",{}", csv_pair(stat(&row.id_acc)));
        for (_, _, _, read) in SAMPLER_COLUMNS {
            let values: Vec<f64> = row.sampler.iter().map(read).collect();
            let _ = write!(table_csv, ",{}", csv_pair(stat(&values)));
        }
        table_csv.push('\n');
    }
    let write = |name: &str, text: &str| {
        let path = root.join(name);
        std::fs::write(&path, text).map_err(|source| Error::Io { op: "writing", path, source })
    };
    write("table.md", &markdown)?;
    write("table.csv", &table_csv)?;
    write("cells.csv", &cells_csv)?;
    let points: Vec<super::plot::Point> = rows
        .iter()
        .filter(|r| r.seeds > 0)
        .map(|r| super::plot::Point {
            label: if grid.models.len() > 1 {
                format!("{} ({})", r.setting.short_label(), r.model_name)
            } else {
                r.setting.short_label()
            },
            near: MeanStd::of(&r.near[0]),
            far: MeanStd::of(&r.far[0]),
        })
        .collect();
    if !points.is_empty() {
        let title = format!("FPR95 per setting ({} scores), mean ± std over seeds", grid.scorer);
        super::plot::fpr95_bars(&root.join("fpr95.png"), &title, &points)?;
    }
    Ok(markdown)
}

fn markdown(
    grid: &Grid,
    keys: &[&str],
    rows: &[Row],
    with_sampler: bool,
    outcomes: &[CellOutcome],
    unreadable: &[String],
) -> String {
    let mut out = format!(
        "Ablation over {}: {} per setting, scorer `{}`. FPR95, AUROC and AUPR-In (ID positive) in \
         percent as mean ± sample std over the seeds with results (lower FPR95, higher AUROC and \
         AUPR are better); near and far are the averages over the near-OOD and far-OOD sets.",
        if keys.is_empty() { "nothing (the base config)".to_string() } else { keys.join(" × ") },
        crate::eval::report::plural(grid.seeds.len(), "seed"),
        grid.scorer
    );
    if with_sampler {
        out.push_str(
            " The sampler columns are over the HamOS fine-tuning steps of each seed: the median \
             synthesis time per mini-batch, the mean acceptance, barrier rejections per mini-batch \
             and the mean angle a chain moves per round.",
        );
    }
    out.push_str("\n\n|");
    for key in keys {
        let _ = write!(out, " {key} |");
    }
    out.push_str(" model | seeds |");
    for group in ["near", "far"] {
        for (_, heading, _) in METRICS {
            let _ = write!(out, " {group} {heading} |");
        }
    }
    out.push_str(" ID acc |");
    if with_sampler {
        for (_, heading, ..) in SAMPLER_COLUMNS {
            let _ = write!(out, " {heading} |");
        }
    }
    out.push_str("\n|");
    out.push_str(&"---|".repeat(keys.len() + 1));
    let numeric = 1 + 2 * METRICS.len() + 1 + if with_sampler { SAMPLER_COLUMNS.len() } else { 0 };
    out.push_str(&"---:|".repeat(numeric));
    out.push('\n');
    for row in rows {
        out.push('|');
        for (_, value) in &row.setting.0 {
            let _ = write!(out, " {value} |");
        }
        let _ = write!(out, " {} | {}/{} |", row.model_name, row.seeds, grid.seeds.len());
        for values in row.near.iter().chain(&row.far) {
            let _ = write!(out, " {} |", show(stat(values), 100.0, 2));
        }
        let _ = write!(out, " {} |", show(stat(&row.id_acc), 100.0, 2));
        if with_sampler {
            for (_, _, digits, read) in SAMPLER_COLUMNS {
                let values: Vec<f64> = row.sampler.iter().map(read).collect();
                let _ = write!(out, " {} |", show(stat(&values), 1.0, digits));
            }
        }
        out.push('\n');
    }
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match &o.status {
            CellStatus::Failed(error) => Some(format!("- {}: {error}", o.cell.label())),
            _ => None,
        })
        .chain(unreadable.iter().map(|u| format!("- {u}")))
        .collect();
    if !failed.is_empty() {
        let _ = write!(out, "\nCells without results ({}):\n{}\n", failed.len(), failed.join("\n"));
    }
    out
}
