//! `hamos eval --run DIR [--scorers ...]`: evaluates the models of a finished run again, with
//! any scorers, into a new folder (the run's own results stay as they were).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hamos_api::{Error, Result};

use super::evaluate::{default_scorer, MetricRecord, PlannedScorer};
use super::job::{configured_scorer, data_sizes, default_plan, feature_knn, write_evaluation, KNN_FEATURES};
use super::models::{load_run_models, EvalModel, PlannedScorers};
use super::{plots, report};
use crate::config::RunConfig;
use crate::pipeline::{Observer, Pipeline};
use crate::RunDir;

/// What `hamos eval` produced.
pub struct EvalOutcome {
    /// Where the results went.
    pub dir: PathBuf,
    /// Every metric record.
    pub records: Vec<MetricRecord>,
}

/// The version line a run directory's `VERSION` must hold to be evaluated by this program.
fn this_version() -> String {
    format!("hamos {}", env!("CARGO_PKG_VERSION"))
}

/// The config of run directory `run`, after checking that this program wrote it.
pub fn run_config(run: &Path) -> Result<RunConfig> {
    if !run.is_dir() {
        return Err(Error::Data(format!(
            "{} is not a directory: give a run directory of `hamos run`",
            run.display()
        )));
    }
    let version_file = run.join(RunDir::VERSION);
    let version = std::fs::read_to_string(&version_file).map_err(|source| Error::Io {
        op: "reading the version of the run (is this a run directory of `hamos run` or `hamos train`?)",
        path: version_file.clone(),
        source,
    })?;
    if version.trim() != this_version() {
        return Err(Error::Data(format!(
            "{} was written by {}, this is {}: its checkpoints may not load. Evaluate it with that \
             version, or run it again with this one: `hamos run --config {}`",
            run.display(),
            version.trim(),
            this_version(),
            RunDir::at(run).config_file().display()
        )));
    }
    let file = RunDir::at(run).config_file();
    if !file.is_file() {
        return Err(Error::Data(format!("{} is missing: the run directory is incomplete", file.display())));
    }
    crate::ConfigSources { base: None, file: Some(file), env: false, overrides: Vec::new() }.load()
}

/// The scorers named in `names` (the configured settings for the configured scorer's name, the
/// defaults for others; `knn_features` is KNN on the normalized penultimate features, as in
/// `hamos run`, and for a plain classifier the same as its `knn`), for every model.
fn named_plan(config: &RunConfig, names: &[String]) -> Result<PlannedScorers> {
    names
        .iter()
        .map(|name| {
            let planned = if name == KNN_FEATURES {
                feature_knn(config)?.ok_or_else(|| {
                    Error::Config(format!("--scorers: `{KNN_FEATURES}` needs the `knn` scorer plugin"))
                })?
            } else if name == config.scorer.typetag_name() {
                PlannedScorer::new(name.as_str(), configured_scorer(config)?)
            } else {
                PlannedScorer::new(name.as_str(), default_scorer(name)?)
            };
            planned.scorer.validate()?;
            Ok(planned)
        })
        .collect()
}

/// Evaluates the checkpoints of run directory `run` with `scorers` (empty: those of `hamos run`)
/// into `out` (default `run/eval-<UTC time>`).
pub fn eval_run(
    run: &Path,
    scorers: &[String],
    out: Option<PathBuf>,
    observer: &dyn Observer,
) -> Result<EvalOutcome> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let lap = |notes: &mut Vec<String>, what: &str, since: Instant| {
        notes.push(format!("{what}: {:.1} s", since.elapsed().as_secs_f64()));
    };
    let config = run_config(run)?;
    // Check the scorer names before the slow part.
    named_plan(&config, scorers)?;
    let pipeline = Pipeline::new(&config).observed_by(observer);
    let t = Instant::now();
    let prepared = pipeline.prepare()?;
    let tests = pipeline.test_sets(&prepared)?;
    let sizes = data_sizes(&prepared, &tests);
    observer.message(&format!("data: {sizes}"));
    let mut models = load_run_models(&config, run, prepared.classes)?;
    // The order of `hamos run`: pretrained, hamos, then the others (the ID-loss-only model).
    models.sort_by_key(|m| (m.name != "pretrained", m.name != "hamos", m.name.clone()));
    lap(&mut notes, "data and checkpoints", t);
    let out = out.unwrap_or_else(|| run.join(format!("eval-{}", crate::run_dir::now_stamp())));
    std::fs::create_dir_all(&out).map_err(|source| Error::Io {
        op: "creating",
        path: out.clone(),
        source,
    })?;
    let fallback = default_plan(&config);
    let plan = |model: &EvalModel| -> Result<PlannedScorers> {
        if scorers.is_empty() {
            fallback(model)
        } else {
            named_plan(&config, scorers)
        }
    };
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    observer.message(&format!(
        "evaluating {}: features of the training, ID test and {} OOD sets, then scores and metrics",
        names.join(", "),
        tests.ood.len()
    ));
    let t = Instant::now();
    let evaluation = pipeline.evaluate_with(&prepared, &tests, &models, &plan)?;
    write_evaluation(&out, &evaluation)?;
    lap(&mut notes, "features, scoring and metrics", t);
    observer.message(&format!("evaluated in {:.1} s; drawing the plots", t.elapsed().as_secs_f64()));
    let t = Instant::now();
    let mut plotted = Vec::new();
    for scores in &evaluation.scores {
        if !plotted.contains(&scores.model) {
            plots::scores_and_roc(
                &RunDir::at(&out).plots_dir(),
                (&scores.model, &scores.scorer),
                &scores.id,
                &scores.ood,
                None,
            )?;
            plotted.push(scores.model.clone());
        }
    }
    lap(&mut notes, "plots", t);
    let total = started.elapsed().as_secs_f64();
    notes.push(format!("total: {total:.1} s"));
    let absolute = std::path::absolute(run).unwrap_or_else(|_| run.to_path_buf());
    let mut provenance =
        vec![format!("evaluation of run {} (models: {})", absolute.display(), names.join(", "))];
    provenance.extend(report::provenance(&config, &sizes));
    provenance.push(format!("total time {total:.1} s (timings at the end)"));
    report::write_report(&out, &provenance, &evaluation.records, &evaluation.sphere, &notes)?;
    Ok(EvalOutcome { dir: out, records: evaluation.records })
}
