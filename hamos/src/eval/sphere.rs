//! The hyperspherical embedding metrics of Eqn 14 (Appendix C.4, after CIDER): ID-OOD
//! separation, inter-class dispersion and intra-class compactness, reported in degrees
//! (`arccos` of the mean cosine, as the paper's Tables 3 and 8).

use hamos_api::{Error, Result};
use serde::{Deserialize, Serialize};

use super::metrics::{class_prototypes, HypersphereMetrics, MetricsError};
use crate::config::OodGroup;
use crate::train::embed::Embedded;

/// Eqn 14 for one model. Prototypes `mu_c` are the normalized class means of the model's ID
/// training embeddings (never test data).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SphereMetrics {
    /// Model name.
    pub model: String,
    /// The space measured: `projected embeddings`, or `normalized features` for a plain
    /// classifier.
    pub space: String,
    /// Inter-class dispersion: `arccos` of the mean `mu_i . mu_j`, `i != j` (higher = better).
    pub dispersion_deg: f64,
    /// Intra-class compactness: `arccos` of the mean `z . mu_y` over the ID test set
    /// (lower = better).
    pub compactness_deg: f64,
    /// ID-OOD separation per OOD set: `arccos` of the mean `max_c z . mu_c` (higher = better).
    pub separation_deg: Vec<(String, f64)>,
    /// The mean of `separation_deg`.
    pub mean_separation_deg: f64,
    /// The mean of `separation_deg` over the near-OOD sets (none without near sets).
    pub near_separation_deg: Option<f64>,
    /// The mean of `separation_deg` over the far-OOD sets (none without far sets).
    pub far_separation_deg: Option<f64>,
}

/// Rows of `rows` in the space Eqn 14 measures: the projected embeddings, or the features of
/// a classifier (normalized by [`HypersphereMetrics::compute`]).
fn sphere_rows(rows: &Embedded) -> Vec<&[f32]> {
    let (flat, d) = if rows.embedding_dim > 0 {
        (&rows.embeddings, rows.embedding_dim)
    } else {
        (&rows.features, rows.feature_dim)
    };
    flat.chunks(d.max(1)).collect()
}

/// Eqn 14 of a model from its outputs on the training set, the ID test set and each OOD set
/// ([`HypersphereMetrics`] per OOD set; dispersion and compactness do not depend on the set);
/// `groups` gives each OOD set's group (same order) for the near and far means.
pub fn sphere_metrics(
    model: &str,
    train: &Embedded,
    id: &Embedded,
    ood: &[(String, Embedded)],
    groups: &[OodGroup],
) -> Result<SphereMetrics> {
    if groups.len() != ood.len() {
        return Err(Error::Data(format!(
            "Eqn 14 of `{model}`: {} OOD groups for {} OOD sets",
            groups.len(),
            ood.len()
        )));
    }
    let named = |e: MetricsError| Error::Data(format!("Eqn 14 of `{model}`: {e}"));
    let missing = |what: &str| Error::Data(format!("Eqn 14 of `{model}`: the {what} set has no labels"));
    let train_labels = train.labels.as_deref().ok_or_else(|| missing("training"))?;
    let id_labels = id.labels.as_deref().ok_or_else(|| missing("ID test"))?;
    let prototypes = class_prototypes(&sphere_rows(train), train_labels).map_err(named)?;
    let id_rows = sphere_rows(id);
    let mut separation_deg = Vec::with_capacity(ood.len());
    let mut shared = None;
    for (name, rows) in ood {
        let m = HypersphereMetrics::compute(&prototypes, &id_rows, id_labels, &sphere_rows(rows))
            .map_err(|e| Error::Data(format!("Eqn 14 of `{model}` on `{name}`: {e}")))?;
        separation_deg.push((name.clone(), m.separation_deg));
        shared = Some(m);
    }
    let shared = shared.ok_or_else(|| Error::Data(format!("Eqn 14 of `{model}`: no OOD set")))?;
    let mean_of = |group: Option<OodGroup>| {
        let values: Vec<f64> = separation_deg
            .iter()
            .zip(groups)
            .filter(|(_, g)| group.is_none_or(|want| **g == want))
            .map(|((_, v), _)| *v)
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    };
    let mean_separation_deg = mean_of(None).unwrap_or(f64::NAN);
    let (near_separation_deg, far_separation_deg) =
        (mean_of(Some(OodGroup::Near)), mean_of(Some(OodGroup::Far)));
    Ok(SphereMetrics {
        model: model.to_string(),
        space: if train.embedding_dim > 0 { "projected embeddings" } else { "normalized features" }.into(),
        dispersion_deg: shared.dispersion_deg,
        compactness_deg: shared.compactness_deg,
        separation_deg,
        mean_separation_deg,
        near_separation_deg,
        far_separation_deg,
    })
}

/// A Markdown table of `metrics`, one row per model: the ID-OOD separation averaged over the
/// near sets, the far sets and all sets (`-` for a group without sets), dispersion, compactness.
pub fn table(metrics: &[SphereMetrics]) -> String {
    let mut out = String::from(
        "| model | space | ID-OOD separation (near avg) | ID-OOD separation (far avg) | \
         ID-OOD separation (avg) | inter-class dispersion | intra-class compactness |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    for m in metrics {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |\n",
            m.model,
            m.space,
            cell(m.near_separation_deg),
            cell(m.far_separation_deg),
            m.mean_separation_deg,
            m.dispersion_deg,
            m.compactness_deg
        ));
    }
    out
}
