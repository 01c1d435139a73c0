//! The run directory's reports: `metrics.json`, `metrics.csv`, `report.md` (a table laid out
//! like the paper's Table 1) and the raw scores as `.npy` files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};
use npyz::WriterBuilder;

use super::evaluate::{MetricRecord, Scores};
use super::sphere::{self, SphereMetrics};

/// The conventions every report states.
pub const CONVENTIONS: &str = "ID is the positive class and a higher score means more ID-like. FPR95: the \
threshold is the largest t with at least 95 % of ID scores >= t, FPR95 the fraction of OOD scores >= t. AUROC \
counts ties as one half. AUPR-In takes ID as positive, AUPR-Out OOD. FPR95 (OpenOOD) is OpenOOD v1.5's \
variant with OOD as the positive class. Values are fractions in [0, 1].";

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
        let base = dir.join("scores").join(&s.model).join(&s.scorer);
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
    let json = serde_json::json!({ "conventions": CONVENTIONS, "version": env!("CARGO_PKG_VERSION"), "records": records });
    let path = dir.join("metrics.json");
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::Data(format!("metrics.json: {e}")))?;
    std::fs::write(&path, text).map_err(io("writing", &path))?;
    let mut csv = String::from("model,scorer,dataset,fpr95,auroc,aupr_in,aupr_out,fpr95_openood,id_acc\n");
    for r in records {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            r.model, r.scorer, r.dataset, r.fpr95, r.auroc, r.aupr_in, r.aupr_out, r.fpr95_openood, r.id_acc
        );
    }
    let path = dir.join("metrics.csv");
    std::fs::write(&path, csv).map_err(io("writing", &path))
}

/// A table like the paper's Table 1: one row per model and scorer; per OOD set FPR95 / AUROC
/// in percent, then the average and the ID accuracy.
pub fn table(records: &[MetricRecord]) -> String {
    let mut sets: Vec<&str> = Vec::new();
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for r in records {
        if r.dataset != "average" && !sets.contains(&r.dataset.as_str()) {
            sets.push(&r.dataset);
        }
        if !rows.contains(&(r.model.as_str(), r.scorer.as_str())) {
            rows.push((&r.model, &r.scorer));
        }
    }
    let mut out = String::from("| model | scorer |");
    for set in sets.iter().chain(std::iter::once(&"average")) {
        let _ = write!(out, " {set} FPR95 | {set} AUROC |");
    }
    out.push_str(" ID acc |\n|---|---|");
    out.push_str(&"---:|---:|".repeat(sets.len() + 1));
    out.push_str("---:|\n");
    for (model, scorer) in rows {
        let _ = write!(out, "| {model} | {scorer} |");
        let mut acc = f64::NAN;
        for set in sets.iter().chain(std::iter::once(&"average")) {
            match records.iter().find(|r| r.model == model && r.scorer == scorer && r.dataset == *set) {
                Some(r) => {
                    acc = r.id_acc;
                    let _ = write!(out, " {:.2} | {:.2} |", 100.0 * r.fpr95, 100.0 * r.auroc);
                }
                None => out.push_str(" - | - |"),
            }
        }
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

/// `report.md`: the table, Eqn 14, the conventions and what produced it.
pub fn write_report(
    dir: &Path,
    records: &[MetricRecord],
    sphere: &[SphereMetrics],
    notes: &[String],
) -> Result<()> {
    let mut text = String::from(
        "# HamOS run report\n\nFPR95 and AUROC in percent (lower FPR95 and higher AUROC are better).\n\n",
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
    let path = dir.join("report.md");
    std::fs::write(&path, text).map_err(io("writing", &path))
}
