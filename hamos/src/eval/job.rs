//! The main job, `hamos run`: cross-entropy pretraining (cached), HamOS fine-tuning, the same
//! fine-tuning without outliers (the ID-loss-only row), evaluation of the fine-tuned models with
//! the configured scorer and KNN on their penultimate features, and of the pretrained model with
//! the post-hoc scorers, and the run directory with reports, raw scores and plots.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hamos_api::{ClassBank, Error, Result, ScoreInput, Scorer, SynthesisInput};
use hamos_nn::DualHeadNet;

use super::evaluate::{default_scorer, MetricRecord, ModelOutputs, PlannedScorer, View};
use super::models::{EvalModel, Evaluation, PlannedScorers};
use super::{plots, report};
use crate::config::{OodGroup, RunConfig};
use crate::pipeline::{DiagnosticsLog, Observer, Pipeline, TestSets};
use crate::train::{Prepared, TrainOptions, Trained};
use crate::RunDir;

/// Post-hoc scorers evaluated on the pretrained classifier, when registered.
pub const POST_HOC: [&str; 9] =
    ["msp", "odin", "energy", "maxlogit", "knn", "mahalanobis", "ash", "scale", "relation"];

/// What `hamos run` produced.
pub struct JobOutcome {
    /// The run directory.
    pub dir: PathBuf,
    /// Every metric record (also in `metrics.json`).
    pub records: Vec<MetricRecord>,
    /// Timings and notes (also in `report.md`).
    pub notes: Vec<String>,
}

/// Name of the KNN score on a model's L2-normalized penultimate features (CIDER's and
/// OpenOOD's choice), beside the head's embeddings that `knn` reads (HamOS's choice).
pub const KNN_FEATURES: &str = "knn_features";

/// The OOD groups of `config`'s OOD sets, in order.
pub fn ood_groups(config: &RunConfig) -> Vec<OodGroup> {
    config.data.ood.iter().map(|set| set.group).collect()
}

/// [`KNN_FEATURES`]: the configured `knn` scorer (its `k` and settings) when the configured
/// scorer is `knn`, else `knn`'s defaults (k = 50), on the normalized penultimate features;
/// none when no `knn` plugin is registered.
pub fn feature_knn(config: &RunConfig) -> Result<Option<PlannedScorer>> {
    let scorer = if config.scorer.typetag_name() == "knn" {
        configured_scorer(config)?
    } else if hamos_api::registry::plugin_names(hamos_api::PluginKind::Scorer).contains(&"knn") {
        default_scorer("knn")?
    } else {
        return Ok(None);
    };
    Ok(Some(PlannedScorer::on_features(KNN_FEATURES, scorer)))
}

/// The scorers of `hamos run`: the post-hoc ones on the pretrained classifier; on the
/// fine-tuned models the configured one (on the head's embeddings) and [`KNN_FEATURES`].
pub fn default_plan(config: &RunConfig) -> impl Fn(&EvalModel) -> Result<PlannedScorers> + '_ {
    move |model: &EvalModel| {
        if model.name == "pretrained" {
            let registered = hamos_api::registry::plugin_names(hamos_api::PluginKind::Scorer);
            POST_HOC
                .iter()
                .filter(|n| registered.contains(n))
                .map(|n| Ok(PlannedScorer::new(*n, default_scorer(n)?)))
                .collect()
        } else {
            let mut plan = vec![PlannedScorer::new(config.scorer.typetag_name(), configured_scorer(config)?)];
            plan.extend(feature_knn(config)?);
            Ok(plan)
        }
    }
}

/// A copy of the configured scorer.
pub fn configured_scorer(config: &RunConfig) -> Result<Box<dyn Scorer>> {
    let text = toml::to_string(&config.scorer).map_err(|e| Error::Config(format!("scorer: {e}")))?;
    toml::from_str(&text).map_err(|e| Error::Config(format!("scorer: {e}")))
}

/// Writes the raw scores, `metrics.json`/`.csv` and `hyperspherical.json` of `evaluation`.
pub fn write_evaluation(dir: &Path, evaluation: &Evaluation) -> Result<()> {
    report::write_all_scores(dir, &evaluation.scores)?;
    report::write_metrics(dir, &evaluation.records)?;
    report::write_sphere(dir, &evaluation.sphere)
}

/// What a job fine-tunes, evaluates and draws: `hamos run` does all of it ([`JobPlan::FULL`]);
/// an ablation cell skips what its table does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPlan {
    /// Fine-tune with synthesized outliers (the `hamos` model).
    pub with_outliers: bool,
    /// Fine-tune the same way without outliers (the `<loss>_only` model).
    pub without_outliers: bool,
    /// Evaluate the pretrained classifier with the post-hoc scorers ([`POST_HOC`]).
    pub post_hoc: bool,
    /// Draw the score histograms, ROC curves and the embedding projection.
    pub plots: bool,
}

impl JobPlan {
    /// Everything: the plan of `hamos run`.
    pub const FULL: JobPlan =
        JobPlan { with_outliers: true, without_outliers: true, post_hoc: true, plots: true };
}

/// Runs the whole pipeline into `dir` (`hamos run`).
pub fn run(pipeline: &Pipeline, dir: &RunDir) -> Result<JobOutcome> {
    run_plan(pipeline, dir, JobPlan::FULL)
}

/// Runs the parts of the pipeline that `plan` names into `dir`: its config, checkpoints, every
/// step's diagnostics (`diagnostics.jsonl`), raw scores, metrics, plots and report.
pub fn run_plan(pipeline: &Pipeline, dir: &RunDir, plan: JobPlan) -> Result<JobOutcome> {
    if !plan.with_outliers && !plan.without_outliers {
        return Err(Error::invalid(
            "models",
            "the job must fine-tune at least one model (with or without outliers)",
        ));
    }
    let config = pipeline.config();
    let started = Instant::now();
    let mut notes = Vec::new();
    let lap = |notes: &mut Vec<String>, what: &str, since: Instant| {
        notes.push(format!("{what}: {:.1} s", since.elapsed().as_secs_f64()));
    };
    dir.write_provenance(config)?;
    let log = DiagnosticsLog::open(&dir.diagnostics_file(), pipeline.observer())?;
    let pipeline = pipeline.clone().observed_by(&log);

    let t = Instant::now();
    let prepared = pipeline.prepare()?;
    let tests = pipeline.test_sets(&prepared)?;
    lap(&mut notes, "data", t);
    let sizes = data_sizes(&prepared, &tests);
    log.message(&format!("data: {sizes}"));
    let t = Instant::now();
    let start = pipeline.pretrain(&prepared)?;
    hamos_nn::checkpoint::save(&start.params, &dir.checkpoint(RunDir::PRETRAINED))?;
    lap(&mut notes, "pretraining (or cache)", t);

    let mut trained: Vec<(String, Trained)> = Vec::new();
    for (wanted, with_outliers) in [(plan.with_outliers, true), (plan.without_outliers, false)] {
        if wanted {
            let options = TrainOptions::new(config, with_outliers).saved_in(dir);
            let t = Instant::now();
            trained.push((options.label.clone(), pipeline.finetune_with(&prepared, &start, &options)?));
            let what = if with_outliers { "HamOS".to_string() } else { options.label };
            lap(&mut notes, &format!("{what} fine-tuning"), t);
        }
    }

    let t = Instant::now();
    let mut models = Vec::new();
    if plan.post_hoc {
        models.push(EvalModel::pretrained(&start));
    }
    models.extend(trained.iter().map(|(name, model)| EvalModel::finetuned(name, model)));
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    log.message(&format!(
        "evaluating {}: features of the training, ID test and {} OOD sets, then scores and metrics",
        crate::eval::report::and_list(&names),
        tests.ood.len()
    ));
    let evaluation = pipeline.evaluate(&prepared, &tests, &models)?;
    write_evaluation(dir.path(), &evaluation)?;
    lap(&mut notes, "features, scoring and metrics", t);
    log.message(&format!("evaluated in {:.1} s", t.elapsed().as_secs_f64()));

    let scorer_name = config.scorer.typetag_name();
    if plan.plots {
        let t = Instant::now();
        log.message("synthesizing outliers for the plots and drawing them");
        let hamos = trained
            .iter()
            .zip(&evaluation.outputs[usize::from(plan.post_hoc)..])
            .find(|((n, _), _)| n == "hamos");
        let outlier_scores = match hamos {
            Some(((_, model), outputs)) => {
                let backend = start.params.backend().clone();
                let outliers = synthesize_final(config, model, outputs)?;
                let scores = score_outliers(config, &backend, outputs, &outliers)?;
                report::write_scores(&dir.scores_dir().join("hamos/outliers.npy"), &scores)?;
                let train_labels = outputs.train.labels.clone().unwrap_or_default();
                plots::embedding_projection(
                    &dir.plots_dir().join("hamos_embeddings.png"),
                    "HamOS: ID training embeddings (by class) and synthesized outliers, PCA",
                    &outputs.train.embeddings,
                    &train_labels,
                    outputs.train.embedding_dim,
                    &outliers,
                    3000,
                )?;
                scores
            }
            None => Vec::new(),
        };
        // The pretrained classifier's plots use KNN on its normalized features (its best
        // post-hoc scorer here, far better than MSP).
        for scores in evaluation.scores.iter().filter(|s| s.model != "pretrained" || s.scorer == "knn") {
            // The outliers were scored by the configured scorer on the head's embeddings.
            let extra =
                (scores.model == "hamos" && scores.scorer == scorer_name && !outlier_scores.is_empty())
                    .then_some(outlier_scores.as_slice());
            plots::scores_and_roc(
                &dir.plots_dir(),
                (&scores.model, &scores.scorer),
                &scores.id,
                &scores.ood,
                extra,
            )?;
        }
        lap(&mut notes, "synthesis for plots and plots", t);
    }
    for (label, model) in &trained {
        for summary in &model.history {
            notes.push(crate::pipeline::epoch_line(label, summary, config.train.epochs));
        }
    }
    notes.push(format!("scorer of the fine-tuned models: {scorer_name}"));
    let total = started.elapsed().as_secs_f64();
    notes.push(format!("total: {total:.1} s"));
    let mut provenance = report::provenance(config, &sizes);
    provenance.push(format!("pretrained classifier: {}", start.source));
    provenance.push(format!("total time {total:.1} s (timings at the end)"));
    report::write_report(dir.path(), &provenance, &evaluation.records, &evaluation.sphere, &notes)?;
    Ok(JobOutcome { dir: dir.path().to_path_buf(), records: evaluation.records, notes })
}

/// The sizes of the data a run used, e.g. `train 2700, validation 300, ID test 10000, OOD mnist
/// 2000, ...`.
pub fn data_sizes(prepared: &Prepared, tests: &TestSets) -> String {
    let ood: Vec<String> = tests.ood.iter().map(|set| format!("{} {}", set.name, set.len())).collect();
    format!(
        "train {}, validation {}, ID test {}, OOD {}",
        prepared.train.len(),
        prepared.validation.len(),
        tests.id.len(),
        ood.join(", ")
    )
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
    let fitted = config.scorer.fit(&super::evaluate::score_input(
        backend,
        &outputs.train,
        None,
        true,
        View::Embeddings,
    )?)?;
    let input = ScoreInput::from_embeddings(backend.from_f32(outliers, &[outliers.len() / d, d])?);
    Ok(fitted.score(&input)?.to_vec_f32()?.into_iter().map(f64::from).collect())
}
