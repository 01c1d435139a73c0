//! The pipeline as a library: prepare the data, pretrain, fine-tune, evaluate, each step a
//! function that returns values, nothing written unless asked. The `hamos` command's jobs
//! (`run`, `train`, `eval`, `ablate`) are callers of it that add a run directory, progress bars
//! and reports.
//!
//! A [`Pipeline`] holds the run's config, an [`Observer`] of its progress ([`Silent`] unless
//! given) and, if given, the folder where pretrained classifiers are cached.
//!
//! The [crate docs](crate) hold a complete example: a tiny model pretrained, fine-tuned and
//! evaluated in memory.

mod observer;

use std::path::{Path, PathBuf};

use hamos_api::{Error, Result};

pub use observer::{epoch_line, DiagnosticsLog, Observer, Silent};

use crate::config::{OodGroup, RunConfig};
use crate::data::{self, ImageSet};
use crate::eval::evaluate::TestImages;
use crate::eval::job::default_plan;
use crate::eval::models::{evaluate_models, EvalModel, Evaluation, ScorerPlan};
use crate::train::{self, Prepared, Pretrained, TrainOptions, Trained};

/// The test data of an evaluation: the ID test set and the OOD sets with their groups.
#[derive(Debug, Clone)]
pub struct TestSets {
    /// The ID test set (labelled, the training data's classes).
    pub id: ImageSet,
    /// The OOD test sets, named.
    pub ood: Vec<ImageSet>,
    /// The group (near or far) of each OOD set, same order.
    pub groups: Vec<OodGroup>,
}

impl TestSets {
    /// The ID set and the OOD sets, each with its group; errors when there is no OOD set, an
    /// OOD set is empty, or the images' shapes differ.
    pub fn new(id: ImageSet, ood: Vec<(ImageSet, OodGroup)>) -> Result<Self> {
        if ood.is_empty() {
            return Err(Error::invalid("data.ood", "the evaluation needs at least one OOD test set"));
        }
        for (set, _) in &ood {
            if set.shape != id.shape {
                return Err(Error::Data(format!(
                    "OOD set `{}` has images {:?}, the ID data {:?}",
                    set.name, set.shape, id.shape
                )));
            }
            if set.is_empty() {
                return Err(Error::Data(format!("OOD set `{}` is empty", set.name)));
            }
        }
        let (ood, groups) = ood.into_iter().unzip();
        Ok(TestSets { id, ood, groups })
    }

    /// The ID test set and the OOD sets of `config`, checked against the training data.
    pub fn load(config: &RunConfig, prepared: &Prepared) -> Result<Self> {
        let shape = prepared.train.shape;
        let id = data::load(&config.data.test, config.seed, Some(shape))?;
        data::check_id_set(&id, prepared.classes)?;
        let mut ood = Vec::with_capacity(config.data.ood.len());
        for (index, set) in config.data.ood.iter().enumerate() {
            let mut images = data::load(&set.dataset, data::noise_seed(config.seed, index), Some(shape))?;
            images.name = set.name.clone();
            ood.push((images, set.group));
        }
        TestSets::new(id, ood)
    }

    /// The sets as the evaluation reads them, `chunk` images per forward pass.
    pub fn images(&self, chunk: usize) -> TestImages<'_> {
        TestImages { id: &self.id, ood: &self.ood, groups: &self.groups, chunk }
    }
}

/// The steps of a run over one config: see the [module docs](self).
#[derive(Clone)]
pub struct Pipeline<'a> {
    config: &'a RunConfig,
    observer: &'a dyn Observer,
    cache: Option<PathBuf>,
}

impl<'a> Pipeline<'a> {
    /// The pipeline of `config`: silent, caching nothing.
    pub fn new(config: &'a RunConfig) -> Self {
        Pipeline { config, observer: &Silent, cache: None }
    }

    /// Reports progress and diagnostics to `observer`.
    pub fn observed_by(self, observer: &'a dyn Observer) -> Self {
        Pipeline { observer, ..self }
    }

    /// Caches pretrained classifiers in the folder `cache` (none: pretrain every time), keyed
    /// by everything that shapes them, and reuses them from there.
    pub fn with_cache(self, cache: Option<PathBuf>) -> Self {
        Pipeline { cache, ..self }
    }

    /// The config.
    pub fn config(&self) -> &'a RunConfig {
        self.config
    }

    /// The observer.
    pub fn observer(&self) -> &'a dyn Observer {
        self.observer
    }

    /// The cache folder of pretrained classifiers, if any.
    pub fn cache(&self) -> Option<&Path> {
        self.cache.as_deref()
    }

    /// Loads the ID training data, holds out the validation split, checks it fits the model.
    pub fn prepare(&self) -> Result<Prepared> {
        train::prepare(self.config)
    }

    /// The config's ID test set and OOD sets.
    pub fn test_sets(&self, data: &Prepared) -> Result<TestSets> {
        TestSets::load(self.config, data)
    }

    /// The classifier to fine-tune: `train.pretrained` if set, else the cached one, else
    /// trained now with cross-entropy (and cached).
    pub fn pretrain(&self, data: &Prepared) -> Result<Pretrained> {
        let pretrained = train::pretrained(self.config, data, self.cache(), self.observer)?;
        self.observer.message(&format!("pretrained classifier: {}", pretrained.source));
        Ok(pretrained)
    }

    /// Fine-tunes from `start` (Algorithm 2) in memory: with synthesized outliers (the `hamos`
    /// model) or without them (the ID-loss-only `<loss>_only` model).
    pub fn finetune(&self, data: &Prepared, start: &Pretrained, with_outliers: bool) -> Result<Trained> {
        self.finetune_with(data, start, &TrainOptions::new(self.config, with_outliers))
    }

    /// Fine-tunes from `start` as `options` say (a checkpoint every epoch, resume, a label).
    pub fn finetune_with(
        &self,
        data: &Prepared,
        start: &Pretrained,
        options: &TrainOptions,
    ) -> Result<Trained> {
        train::finetune(self.config, data, start, options, self.observer)
    }

    /// Evaluates `models` on `tests` with the scorers of `hamos run`: the post-hoc scorers on a
    /// model named `pretrained`; on the others the configured scorer (on the head's embeddings)
    /// and KNN on the penultimate features.
    pub fn evaluate(&self, data: &Prepared, tests: &TestSets, models: &[EvalModel]) -> Result<Evaluation> {
        self.evaluate_with(data, tests, models, &default_plan(self.config))
    }

    /// Evaluates `models` on `tests` with the scorers `plan` assigns to each model.
    pub fn evaluate_with(
        &self,
        data: &Prepared,
        tests: &TestSets,
        models: &[EvalModel],
        plan: &ScorerPlan,
    ) -> Result<Evaluation> {
        let sets = tests.images(train::eval_chunk(self.config));
        evaluate_models(models, plan, sets, &data.train, &data.normalizer, self.observer)
    }
}
