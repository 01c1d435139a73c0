//! The main job, `hamos run`: cross-entropy pretraining (cached), HamOS fine-tuning, the same
//! fine-tuning without outliers (the ID-loss-only row), evaluation of the three models with the
//! configured scorer and of the pretrained model with the post-hoc scorers, and the run
//! directory with reports, raw scores and plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hamos_api::{ClassBank, Error, Result, RunConfig, ScoreInput, SynthesisInput};
use hamos_nn::DualHeadNet;

use super::evaluate::{
    default_scorer, linear_head, records, score_model, MetricRecord, ModelOutputs, Scores,
};
use super::{plots, report};
use crate::data::{self, ImageSet};
use crate::train::embed::{embed_classifier, embed_dual, Embedded};
use crate::train::progress::Progress;
use crate::train::{self, Prepared, TrainOptions, Trained};

/// Post-hoc scorers evaluated on the pretrained classifier, when registered.
pub const POST_HOC: [&str; 8] =
    ["msp", "energy", "maxlogit", "knn", "mahalanobis", "ash", "scale", "relation"];

/// A model's outputs on the training set, the ID test set and each named OOD set.
type SetOutputs = (Embedded, Embedded, Vec<(String, Embedded)>);

/// What `hamos run` produced.
pub struct JobOutcome {
    /// The run directory.
    pub dir: PathBuf,
    /// Every metric record (also in `metrics.json`).
    pub records: Vec<MetricRecord>,
    /// Timings and notes (also in `report.md`).
    pub notes: Vec<String>,
}

/// The ID test set and the OOD test sets of `config`, checked against the training data.
pub fn test_sets(config: &RunConfig, prepared: &Prepared) -> Result<(ImageSet, Vec<ImageSet>)> {
    let shape = prepared.train.shape;
    let id = data::load(&config.data.test, config.seed, Some(shape))?;
    data::check_id_set(&id, prepared.classes)?;
    let mut ood = Vec::with_capacity(config.data.ood.len());
    for (index, set) in config.data.ood.iter().enumerate() {
        let mut images = data::load(&set.dataset, data::noise_seed(config.seed, index), Some(shape))?;
        if images.shape != shape {
            return Err(Error::Data(format!(
                "OOD set `{}` has images {:?}, the ID data {shape:?}",
                set.name, images.shape
            )));
        }
        if images.is_empty() {
            return Err(Error::Data(format!("OOD set `{}` is empty", set.name)));
        }
        images.name = set.name.clone();
        ood.push(images);
    }
    if ood.is_empty() {
        return Err(Error::invalid("data.ood", "the run needs at least one OOD test set"));
    }
    Ok((id, ood))
}

/// Runs the whole pipeline of `config` into `dir`.
pub fn run(config: &RunConfig, dir: &Path, progress: &Progress) -> Result<JobOutcome> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let lap = |notes: &mut Vec<String>, what: &str, since: Instant| {
        notes.push(format!("{what}: {:.1} s", since.elapsed().as_secs_f64()));
    };
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| Error::Io { op: "writing", path, source })
    };
    write("config.toml", config.to_toml()?)?;
    write("VERSION", format!("hamos {}\n", env!("CARGO_PKG_VERSION")))?;

    let t = Instant::now();
    let prepared = train::prepare(config)?;
    let (id_test, ood_sets) = test_sets(config, &prepared)?;
    lap(&mut notes, "data", t);
    let t = Instant::now();
    let start = train::pretrained(config, &prepared, progress)?;
    progress.println(&format!("pretrained classifier: {}", start.source));
    notes.push(format!("pretrained classifier: {}", start.source));
    lap(&mut notes, "pretraining (or cache)", t);

    let finetune = |label: &str, with_outliers: bool| -> Result<Trained> {
        let options = TrainOptions {
            out_dir: dir.to_path_buf(),
            label: label.into(),
            with_outliers,
            resume: false,
            stop_after_epochs: None,
        };
        train::finetune(config, &prepared, &start, &options, progress)
    };
    let t = Instant::now();
    let hamos = finetune("hamos", true)?;
    lap(&mut notes, "HamOS fine-tuning", t);
    let id_only_label = format!("{}_only", config.loss.typetag_name());
    let t = Instant::now();
    let id_only = finetune(&id_only_label, false)?;
    lap(&mut notes, &format!("{id_only_label} fine-tuning"), t);

    let t = Instant::now();
    let chunk = train::eval_chunk(config);
    let norm = &prepared.normalizer;
    let backend = start.params.backend().clone();
    let bar = progress.bar("evaluate", 3);
    let pass_all = |f: &dyn Fn(&ImageSet) -> Result<Embedded>| -> Result<SetOutputs> {
        let ood = ood_sets.iter().map(|s| Ok((s.name.clone(), f(s)?))).collect::<Result<Vec<_>>>()?;
        Ok((f(&prepared.train)?, f(&id_test)?, ood))
    };
    let mut models = Vec::new();
    let (train_rows, id_rows, ood_rows) =
        pass_all(&|s: &ImageSet| embed_classifier(&start.net, &start.params, s, norm, chunk))?;
    models.push(ModelOutputs {
        name: "pretrained".into(),
        train: train_rows,
        id: id_rows,
        ood: ood_rows,
        head: Some(linear_head(&start.params, "backbone")?),
    });
    bar.inc(1);
    for (name, trained) in [("hamos", &hamos), (id_only_label.as_str(), &id_only)] {
        let (train_rows, id_rows, ood_rows) =
            pass_all(&|s: &ImageSet| embed_dual(&trained.net, &trained.params, s, norm, chunk))?;
        models.push(ModelOutputs {
            name: name.into(),
            train: train_rows,
            id: id_rows,
            ood: ood_rows,
            head: Some(linear_head(&trained.params, "backbone")?),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    lap(&mut notes, "feature extraction", t);

    let t = Instant::now();
    let mut all_scores: Vec<Scores> = Vec::new();
    let registered = hamos_api::registry::plugin_names(hamos_api::PluginKind::Scorer);
    for name in POST_HOC.iter().filter(|n| registered.contains(n)) {
        all_scores.push(score_model(&backend, &models[0], name, default_scorer(name)?.as_ref())?);
    }
    let scorer_name = config.scorer.typetag_name();
    for model in &models[1..] {
        all_scores.push(score_model(&backend, model, scorer_name, config.scorer.as_ref())?);
    }
    lap(&mut notes, "scoring", t);
    let mut all_records = Vec::new();
    for scores in &all_scores {
        all_records.extend(records(scores)?);
    }
    report::write_all_scores(dir, &all_scores)?;
    report::write_metrics(dir, &all_records)?;

    let t = Instant::now();
    let hamos_scores = all_scores
        .iter()
        .find(|s| s.model == "hamos")
        .ok_or_else(|| Error::Data("no HamOS scores".into()))?;
    let outliers = synthesize_final(config, &hamos, &models[1])?;
    let outlier_scores = score_outliers(config, &backend, &models[1], &outliers)?;
    report::write_scores(&dir.join("scores/hamos/outliers.npy"), &outlier_scores)?;
    let ood_refs: Vec<(&str, &[f64])> =
        hamos_scores.ood.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
    plots::score_histograms(
        &dir.join("plots/hamos_scores.png"),
        &format!("HamOS, {scorer_name} scores"),
        &hamos_scores.id,
        &ood_refs,
        (!outlier_scores.is_empty()).then_some(outlier_scores.as_slice()),
    )?;
    plots::roc_curves(
        &dir.join("plots/hamos_roc.png"),
        &format!("HamOS, {scorer_name}: ROC"),
        &hamos_scores.id,
        &ood_refs,
    )?;
    if let Some(baseline) = all_scores.iter().find(|s| s.model == "pretrained" && s.scorer == "msp") {
        let refs: Vec<(&str, &[f64])> =
            baseline.ood.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        plots::score_histograms(
            &dir.join("plots/pretrained_msp_scores.png"),
            "pretrained, MSP scores",
            &baseline.id,
            &refs,
            None,
        )?;
    }
    let train_labels = models[1].train.labels.clone().unwrap_or_default();
    plots::embedding_projection(
        &dir.join("plots/hamos_embeddings.png"),
        "HamOS: ID training embeddings (by class) and synthesized outliers, PCA",
        &models[1].train.embeddings,
        &train_labels,
        models[1].train.embedding_dim,
        &outliers,
        3000,
    )?;
    lap(&mut notes, "synthesis for plots and plots", t);
    for summary in hamos.history.iter().chain(&id_only.history) {
        notes.push(format!(
            "epoch {}: loss {:.4}, acceptance {:.3}, validation accuracy {:.4}, {:.0} img/s",
            summary.epoch,
            summary.loss,
            summary.acceptance,
            summary.validation_accuracy,
            summary.images_per_second
        ));
    }
    notes.push(format!("total: {:.1} s", started.elapsed().as_secs_f64()));
    report::write_report(dir, &all_records, &notes)?;
    Ok(JobOutcome { dir: dir.to_path_buf(), records: all_records, notes })
}

/// One mini-batch of outliers from the fine-tuned HamOS model: its training embeddings as the
/// buffer (last `S` per class) and its prototypes.
fn synthesize_final(config: &RunConfig, trained: &Trained, outputs: &ModelOutputs) -> Result<Vec<f32>> {
    let backend = trained.params.backend().clone();
    let rows = &outputs.train;
    let labels: Vec<usize> = rows.labels.as_deref().unwrap_or(&[]).iter().map(|&l| l as usize).collect();
    let bank = ClassBank::from_rows(
        &backend,
        &rows.embeddings,
        rows.embedding_dim,
        &labels,
        rows.classes,
        config.train.buffer_size,
    )?;
    let prototypes = trained.params.get(DualHeadNet::PROTOTYPES)?.clone();
    let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
    let mut rng = hamos_api::rng_from_seed(config.seed ^ 0x504c_4f54);
    let synthesis =
        config.sampler.synthesize(&input, config.energy.as_ref(), config.barrier.as_ref(), &mut rng)?;
    synthesis.outliers.to_vec_f32()
}

/// The configured scorer's scores of outlier embeddings (for the histogram).
fn score_outliers(
    config: &RunConfig,
    backend: &std::sync::Arc<dyn hamos_api::Backend>,
    outputs: &ModelOutputs,
    outliers: &[f32],
) -> Result<Vec<f64>> {
    let d = outputs.train.embedding_dim;
    let consumes = config.scorer.consumes();
    if outliers.is_empty() || consumes.iter().any(|c| *c != hamos_api::Consumes::Embeddings) {
        return Ok(Vec::new());
    }
    let fitted = config.scorer.fit(&super::evaluate::score_input(backend, &outputs.train, None, true)?)?;
    let input = ScoreInput {
        embeddings: backend.from_f32(outliers, &[outliers.len() / d, d])?,
        logits: None,
        labels: None,
        features: None,
        head: None,
    };
    Ok(fitted.score(&input)?.to_vec_f32()?.into_iter().map(f64::from).collect())
}
