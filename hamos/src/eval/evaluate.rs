//! Scores of every model x scorer x test set, from host outputs of evaluation-mode passes.
//! Features are extracted once per model and set and shared by every scorer.

use std::rc::Rc;
use std::sync::Arc;

use hamos_api::{
    Backend, Consumes, Error, FittedScorer, InputModel, LinearHead, ModelInputs, ParamStore, Result,
    ScoreInput, Scorer, Tensor,
};

use super::metrics::{accuracy, OodMetrics};
use super::probe::pixel_chunk;
use crate::data::ImageSet;
use crate::train::embed::Embedded;

/// A model's outputs on the training set (for fitting), the ID test set and each OOD set.
pub struct ModelOutputs {
    /// Model name in reports (`pretrained`, `hamos`, ...).
    pub name: String,
    /// On the ID training data.
    pub train: Embedded,
    /// On the ID test set.
    pub id: Embedded,
    /// On each OOD test set, by name.
    pub ood: Vec<(String, Embedded)>,
    /// The classification layer (`fc`), for scorers that reshape features.
    pub head: Option<LinearHead>,
    /// The classifier as a function of raw images, for input-perturbation scorers (ODIN).
    pub probe: Option<Rc<dyn InputModel>>,
}

/// The test images behind [`ModelOutputs::id`] and [`ModelOutputs::ood`] (same order), for
/// scorers that perturb inputs; they are scored `chunk` images at a time.
#[derive(Clone, Copy)]
pub struct TestImages<'a> {
    /// The ID test set.
    pub id: &'a ImageSet,
    /// The OOD test sets.
    pub ood: &'a [ImageSet],
    /// Images per forward and backward pass.
    pub chunk: usize,
}

/// One scorer's scores on one model.
#[derive(Debug, Clone)]
pub struct Scores {
    /// Model name.
    pub model: String,
    /// Scorer name.
    pub scorer: String,
    /// Scores of the ID test set (higher = more ID).
    pub id: Vec<f64>,
    /// Scores of each OOD set.
    pub ood: Vec<(String, Vec<f64>)>,
    /// ID test accuracy of the model.
    pub id_accuracy: f64,
}

/// One line of `metrics.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MetricRecord {
    /// Model name.
    pub model: String,
    /// Scorer name.
    pub scorer: String,
    /// OOD set name, or `average`.
    pub dataset: String,
    /// FPR at 95 % TPR (ID positive).
    pub fpr95: f64,
    /// AUROC.
    pub auroc: f64,
    /// AUPR with ID positive.
    pub aupr_in: f64,
    /// AUPR with OOD positive.
    pub aupr_out: f64,
    /// OpenOOD's FPR@95 (OOD positive).
    pub fpr95_openood: f64,
    /// ID test accuracy.
    pub id_acc: f64,
}

/// The classification layer `prefix.fc` of `params`.
pub fn linear_head(params: &ParamStore, prefix: &str) -> Result<LinearHead> {
    let name = |leaf: &str| hamos_api::join_name(prefix, leaf);
    Ok(LinearHead {
        weight: params.get(&name("fc.weight"))?.detach()?,
        bias: params.get(&name("fc.bias"))?.detach()?,
    })
}

/// A scorer's input for one set: embeddings (the projected ones, or the normalized features for
/// a model without projection head), logits, features, the head, and labels when asked.
pub fn score_input(
    backend: &Arc<dyn Backend>,
    rows: &Embedded,
    head: Option<&LinearHead>,
    with_labels: bool,
) -> Result<ScoreInput> {
    let n = rows.len();
    if n == 0 {
        return Err(Error::Data("a test set is empty: nothing to score".into()));
    }
    let features = backend.from_f32(&rows.features, &[n, rows.feature_dim])?;
    let embeddings = if rows.embedding_dim > 0 {
        backend.from_f32(&rows.embeddings, &[n, rows.embedding_dim])?
    } else {
        features.l2_normalize(1)?
    };
    let labels = match (&rows.labels, with_labels) {
        (Some(labels), true) => Some(backend.from_i64(labels, &[n])?),
        _ => None,
    };
    Ok(ScoreInput {
        embeddings,
        logits: Some(backend.from_f32(&rows.logits, &[n, rows.classes])?),
        labels,
        features: Some(features),
        head: head.cloned(),
        inputs: None,
    })
}

fn to_f64(scores: &Tensor) -> Result<Vec<f64>> {
    Ok(scores.to_vec_f32()?.into_iter().map(f64::from).collect())
}

/// Fits `scorer` on the model's training outputs and scores the ID and OOD test sets;
/// `images` is needed by scorers that consume [`Consumes::InputGradients`].
pub fn score_model(
    backend: &Arc<dyn Backend>,
    outputs: &ModelOutputs,
    name: &str,
    scorer: &dyn Scorer,
    images: Option<&TestImages>,
) -> Result<Scores> {
    let head = outputs.head.as_ref();
    let fitted = scorer.fit(&score_input(backend, &outputs.train, head, true)?)?;
    let perturbing = scorer.consumes().contains(&Consumes::InputGradients);
    let with_images = match (perturbing, &outputs.probe, images) {
        (false, _, _) => None,
        (true, Some(probe), Some(images)) if images.ood.len() == outputs.ood.len() => {
            Some((probe.clone(), *images))
        }
        _ => {
            return Err(Error::Data(format!(
                "scorer `{name}` needs the test images and model `{}` as a function of them, \
                 which this evaluation does not have",
                outputs.name
            )))
        }
    };
    let score_set = |rows: &Embedded, set: Option<&ImageSet>| -> Result<Vec<f64>> {
        let input = score_input(backend, rows, head, false)?;
        match (&with_images, set) {
            (Some((probe, images)), Some(set)) => {
                score_in_chunks(backend, fitted.as_ref(), &input, set, probe, images.chunk)
            }
            _ => to_f64(&fitted.score(&input)?),
        }
    };
    let id = score_set(&outputs.id, with_images.as_ref().map(|(_, i)| i.id))?;
    let mut ood = Vec::with_capacity(outputs.ood.len());
    for (k, (set, rows)) in outputs.ood.iter().enumerate() {
        ood.push((set.clone(), score_set(rows, with_images.as_ref().map(|(_, i)| &i.ood[k]))?));
    }
    let id_accuracy = match &outputs.id.labels {
        Some(labels) => {
            let rows: Vec<&[f32]> = outputs.id.logits.chunks(outputs.id.classes).collect();
            accuracy(&rows, labels)?
        }
        None => f64::NAN,
    };
    Ok(Scores { model: outputs.name.clone(), scorer: name.to_string(), id, ood, id_accuracy })
}

/// Scores `input` (the rows of `set`) `chunk` images at a time, with the images and the model.
fn score_in_chunks(
    backend: &Arc<dyn Backend>,
    fitted: &dyn FittedScorer,
    input: &ScoreInput,
    set: &ImageSet,
    probe: &Rc<dyn InputModel>,
    chunk: usize,
) -> Result<Vec<f64>> {
    let n = input.embeddings.dim("score", 0)?;
    if set.len() != n {
        return Err(Error::Data(format!(
            "set `{}` has {} images for {n} rows of outputs",
            set.name,
            set.len()
        )));
    }
    let narrow = |t: &Option<Tensor>, start, len| t.as_ref().map(|t| t.narrow(0, start, len)).transpose();
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(chunk.max(1)) {
        let len = chunk.max(1).min(n - start);
        let part = ScoreInput {
            embeddings: input.embeddings.narrow(0, start, len)?,
            logits: narrow(&input.logits, start, len)?,
            labels: None,
            features: narrow(&input.features, start, len)?,
            head: input.head.clone(),
            inputs: Some(ModelInputs {
                images: pixel_chunk(backend, set, start, len)?,
                model: probe.clone(),
            }),
        };
        out.extend(to_f64(&fitted.score(&part)?)?);
    }
    Ok(out)
}

/// The metric records of `scores`: one per OOD set, then their average.
pub fn records(scores: &Scores) -> Result<Vec<MetricRecord>> {
    let mut out = Vec::with_capacity(scores.ood.len() + 1);
    for (set, ood) in &scores.ood {
        let m = OodMetrics::compute(&scores.id, ood)
            .map_err(|e| Error::Data(format!("{} / {} / {set}: {e}", scores.model, scores.scorer)))?;
        out.push(MetricRecord {
            model: scores.model.clone(),
            scorer: scores.scorer.clone(),
            dataset: set.clone(),
            fpr95: m.fpr95,
            auroc: m.auroc,
            aupr_in: m.aupr_in,
            aupr_out: m.aupr_out,
            fpr95_openood: m.fpr95_openood,
            id_acc: scores.id_accuracy,
        });
    }
    if !out.is_empty() {
        let n = out.len() as f64;
        let mean = |f: fn(&MetricRecord) -> f64| out.iter().map(f).sum::<f64>() / n;
        out.push(MetricRecord {
            model: scores.model.clone(),
            scorer: scores.scorer.clone(),
            dataset: "average".into(),
            fpr95: mean(|r| r.fpr95),
            auroc: mean(|r| r.auroc),
            aupr_in: mean(|r| r.aupr_in),
            aupr_out: mean(|r| r.aupr_out),
            fpr95_openood: mean(|r| r.fpr95_openood),
            id_acc: scores.id_accuracy,
        });
    }
    Ok(out)
}

/// A scorer plugin with its default config, by registered name.
pub fn default_scorer(name: &str) -> Result<Box<dyn Scorer>> {
    let registration = hamos_api::registry::find_plugin(hamos_api::PluginKind::Scorer, name)?;
    let table = (registration.default_config)()?;
    toml::Value::Table(table).try_into().map_err(|e| Error::Config(format!("scorer `{name}`: {e}")))
}
