//! The run directory's reports: `metrics.json`, `metrics.csv`, `report.md` (a table laid out
//! like the paper's Table 1) and the raw scores as `.npy` files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};
use npyz::WriterBuilder;

use super::evaluate::{MetricRecord, Scores, AVERAGE, FAR_AVERAGE, NEAR_AVERAGE};
use super::sphere::{self, SphereMetrics};

/// The conventions every report states.
pub const CONVENTIONS: &str = "ID is the positive class and a higher score means more ID-like. FPR95: the \
threshold is the largest t with at least 95 % of ID scores >= t, FPR95 the fraction of OOD scores >= t. AUROC \
counts ties as one half. AUPR-In takes ID as positive, AUPR-Out OOD. FPR95 (OpenOOD) is OpenOOD v1.5's \
variant with OOD as the positive class.";

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

/// Writes `values` as a float64 `.npy` vector.
pub fn write_scores(path: &Path, values: &[f64]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io("creating", path))?);
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&[values.len() as u64])
        .writer(file)
        .begin_nd()
        .map_err(io("writing", path))?;
    writer.extend(values.iter().copied()).map_err(io("writing", path))?;
    writer.finish().map_err(io("writing", path))
}

/// `scores/<model>/<scorer>/{id,<set>}.npy` for every score set; returns the files written.
pub fn write_all_scores(dir: &Path, scores: &[Scores]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for s in scores {
        let base = crate::RunDir::at(dir).scores_dir().join(&s.model).join(&s.scorer);
        let id = base.join("id.npy");
        write_scores(&id, &s.id)?;
        written.push(id);
        for (set, values) in &s.ood {
            let path = base.join(format!("{set}.npy"));
            write_scores(&path, values)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// `metrics.json` (the records and the conventions) and `metrics.csv`.
pub fn write_metrics(dir: &Path, records: &[MetricRecord]) -> Result<()> {
    let json = serde_json::json!({
        "conventions": CONVENTIONS,
        "units": "fractions in [0, 1] (report.md and the printed tables show percent)",
        "version": env!("CARGO_PKG_VERSION"),
        "records": records,
    });
    let path = crate::RunDir::at(dir).metrics_file();
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Data(format!("metrics.json: {e}")))?;
    std::fs::write(&path, text).map_err(io("writing", &path))?;
    let mut csv =
        String::from("model,scorer,dataset,group,fpr95,auroc,aupr_in,aupr_out,fpr95_openood,id_acc\n");
    for r in records {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{}",
            r.model,
            r.scorer,
            r.dataset,
            r.group,
            r.fpr95,
            r.auroc,
            r.aupr_in,
            r.aupr_out,
            r.fpr95_openood,
            r.id_acc
        );
    }
    let path = dir.join("metrics.csv");
    std::fs::write(&path, csv).map_err(io("writing", &path))
}

/// The average columns of the report tables, in order: dataset of the record, heading.
const AVERAGE_COLUMNS: [(&str, &str); 3] =
    [(NEAR_AVERAGE, "near-OOD avg"), (FAR_AVERAGE, "far-OOD avg"), (AVERAGE, "all-OOD avg")];

/// The tables of `records`, percent, one row per model and scorer: first the averages over the
/// near-OOD sets, the far-OOD sets and all sets side by side (FPR95, FPR95 (OpenOOD), AUROC
/// each, then the ID accuracy), then a table like the paper's Table 1 with the same three
/// metrics per OOD set, near sets first. A missing record shows as `-`.
pub fn table(records: &[MetricRecord]) -> String {
    let averages: Vec<(&str, String)> = AVERAGE_COLUMNS
        .iter()
        .filter(|(dataset, _)| records.iter().any(|r| r.dataset == *dataset))
        .map(|(dataset, label)| (*dataset, label.to_string()))
        .collect();
    let is_average = |r: &MetricRecord| AVERAGE_COLUMNS.iter().any(|(d, _)| r.dataset == *d);
    let mut sets: Vec<(&str, &str)> = Vec::new();
    for r in records.iter().filter(|r| !is_average(r)) {
        if !sets.iter().any(|(d, _)| *d == r.dataset) {
            sets.push((&r.dataset, &r.group));
        }
    }
    // Near sets first, then far, then any without a group; stable within each.
    sets.sort_by_key(|(_, group)| match *group {
        "near" => 0,
        "far" => 1,
        _ => 2,
    });
    let per_set: Vec<(&str, String)> = sets
        .iter()
        .map(|(d, g)| (*d, if g.is_empty() { d.to_string() } else { format!("{d} ({g})") }))
        .collect();
    let mut out = String::new();
    if !averages.is_empty() {
        out.push_str(&metric_table(records, &averages));
        out.push('\n');
    }
    out.push_str(&metric_table(records, &per_set));
    out
}

/// One Markdown table: a row per model and scorer (first-appearance order), FPR95,
/// FPR95 (OpenOOD) and AUROC of each `(dataset, heading)` column, then the ID accuracy.
fn metric_table(records: &[MetricRecord], columns: &[(&str, String)]) -> String {
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for r in records {
        if !rows.contains(&(r.model.as_str(), r.scorer.as_str())) {
            rows.push((&r.model, &r.scorer));
        }
    }
    let mut out = String::from("| model | scorer |");
    for (_, label) in columns {
        let _ = write!(out, " {label} FPR95 | {label} FPR95 (OpenOOD) | {label} AUROC |");
    }
    out.push_str(" ID acc |\n|---|---|");
    out.push_str(&"---:|---:|---:|".repeat(columns.len()));
    out.push_str("---:|\n");
    for (model, scorer) in rows {
        let _ = write!(out, "| {model} | {scorer} |");
        let of_row = |r: &&MetricRecord| r.model == model && r.scorer == scorer;
        for (dataset, _) in columns {
            match records.iter().filter(of_row).find(|r| r.dataset == *dataset) {
                Some(r) => {
                    let _ = write!(
                        out,
                        " {:.2} | {:.2} | {:.2} |",
                        100.0 * r.fpr95,
                        100.0 * r.fpr95_openood,
                        100.0 * r.auroc
                    );
                }
                None => out.push_str(" - | - | - |"),
            }
        }
        let acc = records.iter().find(of_row).map_or(f64::NAN, |r| r.id_acc);
        let _ = writeln!(out, " {:.2} |", 100.0 * acc);
    }
    out
}

/// `hyperspherical.json`: Eqn 14 per model, in degrees.
pub fn write_sphere(dir: &Path, metrics: &[SphereMetrics]) -> Result<()> {
    let json = serde_json::json!({ "units": "degrees", "metrics": metrics });
    let path = dir.join("hyperspherical.json");
    let text =
        serde_json::to_string_pretty(&json).map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    std::fs::write(&path, text).map_err(io("writing", &path))
}

/// `report.md`: what produced it (`provenance`, one line each), the tables (in percent, the only
/// unit statement), Eqn 14, the conventions and `notes` (timings, epoch summaries).
pub fn write_report(
    dir: &Path,
    provenance: &[String],
    records: &[MetricRecord],
    sphere: &[SphereMetrics],
    notes: &[String],
) -> Result<()> {
    let mut text = String::from("# HamOS run report\n\n");
    for line in provenance {
        let _ = writeln!(text, "- {line}");
    }
    if !provenance.is_empty() {
        text.push('\n');
    }
    text.push_str(
        "All metrics are in percent: FPR95, FPR95 (OpenOOD), AUROC and ID accuracy (lower FPR95 and \
         higher AUROC are better). Averages over the near-OOD sets, the far-OOD sets (each set's \
         group is in parentheses; `data.ood.group` in the config) and all sets, then every set. \
         `knn_features` is KNN on a fine-tuned model's normalized penultimate features, `knn` on \
         its projection head's embeddings.\n\n",
    );
    text.push_str(&table(records));
    if !sphere.is_empty() {
        text.push_str(
            "\nHyperspherical metrics (Eqn 14, degrees; prototypes are the normalized class means of \
             the training embeddings; separation and dispersion: higher is better, compactness: \
             lower is better):\n\n",
        );
        text.push_str(&sphere::table(sphere));
    }
    let _ = write!(text, "\nConventions: {CONVENTIONS}\n\n");
    for note in notes {
        let _ = writeln!(text, "- {note}");
    }
    let path = crate::RunDir::at(dir).report_file();
    std::fs::write(&path, text).map_err(io("writing", &path))
}

/// The commit of the source tree this binary was built from, read with `git` at run time
/// (`+ uncommitted changes` when the tracked files differ from it); `None` without git or a
/// checkout.
pub fn source_commit() -> Option<String> {
    let source = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(source)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty())?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{commit} + uncommitted changes") } else { commit })
}

/// `hamos <version>, commit <commit>` (or `commit unknown`).
pub fn version_line() -> String {
    let commit = source_commit().unwrap_or_else(|| "unknown (no git checkout at run time)".to_string());
    format!("hamos {}, commit {commit}", env!("CARGO_PKG_VERSION"))
}

/// The provenance lines of a run's report: what was run, on what, by which program.
pub fn provenance(config: &crate::RunConfig, data_sizes: &str) -> Vec<String> {
    let kind = |section: &str| -> String {
        let table: toml::Table =
            config.to_toml().ok().and_then(|t| toml::from_str(&t).ok()).unwrap_or_default();
        let Some(toml::Value::Table(section)) = table.get(section) else { return "?".into() };
        let fields: Vec<String> =
            section.iter().filter(|(k, _)| k.as_str() != "kind").map(|(k, v)| format!("{k} {v}")).collect();
        let name = section.get("kind").and_then(toml::Value::as_str).unwrap_or("?");
        if fields.is_empty() {
            name.to_string()
        } else {
            format!("{name} ({})", fields.join(", "))
        }
    };
    let train = &config.train;
    vec![
        format!("seed {}, backend {} on {}", config.seed, config.backend, config.device),
        format!("model {}, loss {}", kind("model"), kind("loss")),
        format!("sampler {}; energy {}; barrier {}", kind("sampler"), kind("energy"), kind("barrier")),
        format!(
            "fine-tuning {} (batch {}, learning rate {}), pretraining {}",
            plural(train.epochs, "epoch"),
            train.batch_size,
            train.learning_rate,
            match &train.pretrained {
                Some(path) => format!("loaded from {}", path.display()),
                None =>
                    format!("{} at {}", plural(train.pretrain_epochs, "epoch"), train.pretrain_learning_rate),
            }
        ),
        format!(
            "data: {data_sizes}{}",
            match config.data.train_limit {
                0 => String::new(),
                limit => format!(" (data.train_limit = {limit}: a slice of the training set)"),
            }
        ),
        version_line(),
    ]
}

/// `a`, `a and b`, `a, b and c`.
pub fn and_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `1 epoch`, `3 epochs`.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
