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
use crate::config::OodGroup;
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
    /// The group (near or far) of each OOD set, same order.
    pub groups: &'a [OodGroup],
    /// Images per forward and backward pass.
    pub chunk: usize,
}

/// Name of the record averaging every OOD set.
pub const AVERAGE: &str = "average";
/// Name of the record averaging the near-OOD sets.
pub const NEAR_AVERAGE: &str = "near_average";
/// Name of the record averaging the far-OOD sets.
pub const FAR_AVERAGE: &str = "far_average";
/// [`MetricRecord::group`] of the [`AVERAGE`] record.
pub const ALL_GROUP: &str = "all";

/// The record name of `group`'s average.
pub fn group_average(group: OodGroup) -> &'static str {
    match group {
        OodGroup::Near => NEAR_AVERAGE,
        OodGroup::Far => FAR_AVERAGE,
    }
}

/// Which rows a scorer reads as its `embeddings`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum View {
    /// The projected (head) embeddings; the normalized features of a model without projection
    /// head.
    #[default]
    Embeddings,
    /// The L2-normalized penultimate (backbone) features, for a dual-head model too.
    Features,
}

/// A scorer as planned for a model: its name in reports and score paths, the plugin, and the
/// rows it reads.
pub struct PlannedScorer {
    /// Name in reports and score paths (`knn`, `knn_features`, ...).
    pub name: String,
    /// The scorer plugin.
    pub scorer: Box<dyn Scorer>,
    /// Which rows it reads as embeddings.
    pub view: View,
}

impl PlannedScorer {
    /// `scorer` on the model's embeddings, named `name`.
    pub fn new(name: impl Into<String>, scorer: Box<dyn Scorer>) -> PlannedScorer {
        PlannedScorer { name: name.into(), scorer, view: View::Embeddings }
    }

    /// `scorer` on the model's L2-normalized penultimate features, named `name`.
    pub fn on_features(name: impl Into<String>, scorer: Box<dyn Scorer>) -> PlannedScorer {
        PlannedScorer { name: name.into(), scorer, view: View::Features }
    }
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
    /// The group of each OOD set, in the order of [`Scores::ood`].
    pub groups: Vec<OodGroup>,
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
    /// OOD set name, or `average`, `near_average`, `far_average`.
    pub dataset: String,
    /// `near` or `far`: the OOD set's group, or the group a `near_average`/`far_average`
    /// record averages; `all` for `average`. Empty in files written before groups existed.
    #[serde(default)]
    pub group: String,
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

/// A scorer's input for one set: embeddings (by `view`: the projected ones, or the normalized
/// features, always for a model without projection head), logits, features, the head, and
/// labels when asked.
pub fn score_input(
    backend: &Arc<dyn Backend>,
    rows: &Embedded,
    head: Option<&LinearHead>,
    with_labels: bool,
    view: View,
) -> Result<ScoreInput> {
    let n = rows.len();
    if n == 0 {
        return Err(Error::Data("a test set is empty: nothing to score".into()));
    }
    let features = backend.from_f32(&rows.features, &[n, rows.feature_dim])?;
    let embeddings = if rows.embedding_dim > 0 && view == View::Embeddings {
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

/// Fits the planned scorer on the model's training outputs (in its [`View`]) and scores the ID
/// and OOD test sets; `images` is needed by scorers that consume [`Consumes::InputGradients`],
/// and gives the OOD sets' groups (without it every set is [`OodGroup::Far`], the default).
pub fn score_model(
    backend: &Arc<dyn Backend>,
    outputs: &ModelOutputs,
    planned: &PlannedScorer,
    images: Option<&TestImages>,
) -> Result<Scores> {
    let (name, scorer, view) = (planned.name.as_str(), planned.scorer.as_ref(), planned.view);
    let head = outputs.head.as_ref();
    let fitted = scorer.fit(&score_input(backend, &outputs.train, head, true, view)?)?;
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
        let input = score_input(backend, rows, head, false, view)?;
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
    let groups = match images {
        Some(images) if images.groups.len() == ood.len() => images.groups.to_vec(),
        Some(images) => {
            return Err(Error::Data(format!(
                "{} OOD groups for the {} OOD sets of model `{}`",
                images.groups.len(),
                ood.len(),
                outputs.name
            )))
        }
        None => vec![OodGroup::default(); ood.len()],
    };
    Ok(Scores { model: outputs.name.clone(), scorer: name.to_string(), id, ood, groups, id_accuracy })
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

/// The metric records of `scores`: one per OOD set, then the average of all sets
/// ([`AVERAGE`]), of the near sets ([`NEAR_AVERAGE`]) and of the far sets ([`FAR_AVERAGE`]),
/// each the mean of its per-set records' fields (a group without sets has no record).
pub fn records(scores: &Scores) -> Result<Vec<MetricRecord>> {
    if scores.groups.len() != scores.ood.len() {
        return Err(Error::Data(format!(
            "{} / {}: {} OOD groups for {} OOD sets",
            scores.model,
            scores.scorer,
            scores.groups.len(),
            scores.ood.len()
        )));
    }
    let mut out = Vec::with_capacity(scores.ood.len() + 3);
    for ((set, ood), group) in scores.ood.iter().zip(&scores.groups) {
        let m = OodMetrics::compute(&scores.id, ood)
            .map_err(|e| Error::Data(format!("{} / {} / {set}: {e}", scores.model, scores.scorer)))?;
        out.push(MetricRecord {
            model: scores.model.clone(),
            scorer: scores.scorer.clone(),
            dataset: set.clone(),
            group: group.as_str().into(),
            fpr95: m.fpr95,
            auroc: m.auroc,
            aupr_in: m.aupr_in,
            aupr_out: m.aupr_out,
            fpr95_openood: m.fpr95_openood,
            id_acc: scores.id_accuracy,
        });
    }
    let per_set = out.len();
    let all: Vec<&MetricRecord> = out.iter().collect();
    let mut averages: Vec<MetricRecord> = mean_record(scores, AVERAGE, ALL_GROUP, &all).into_iter().collect();
    for group in [OodGroup::Near, OodGroup::Far] {
        let members: Vec<&MetricRecord> =
            out[..per_set].iter().filter(|r| r.group == group.as_str()).collect();
        averages.extend(mean_record(scores, group_average(group), group.as_str(), &members));
    }
    out.extend(averages);
    Ok(out)
}

/// The record `dataset` whose fields are the means of `members`' (none without members).
fn mean_record(
    scores: &Scores,
    dataset: &str,
    group: &str,
    members: &[&MetricRecord],
) -> Option<MetricRecord> {
    if members.is_empty() {
        return None;
    }
    let n = members.len() as f64;
    let mean = |f: fn(&MetricRecord) -> f64| members.iter().map(|r| f(r)).sum::<f64>() / n;
    Some(MetricRecord {
        model: scores.model.clone(),
        scorer: scores.scorer.clone(),
        dataset: dataset.into(),
        group: group.into(),
        fpr95: mean(|r| r.fpr95),
        auroc: mean(|r| r.auroc),
        aupr_in: mean(|r| r.aupr_in),
        aupr_out: mean(|r| r.aupr_out),
        fpr95_openood: mean(|r| r.fpr95_openood),
        id_acc: scores.id_accuracy,
    })
}

/// A scorer plugin with its default config, by registered name.
pub fn default_scorer(name: &str) -> Result<Box<dyn Scorer>> {
    let registration = hamos_api::registry::find_plugin(hamos_api::PluginKind::Scorer, name)?;
    let table = (registration.default_config)()?;
    toml::Value::Table(table).try_into().map_err(|e| Error::Config(format!("scorer `{name}`: {e}")))
}
