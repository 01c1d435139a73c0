//! The models a run evaluates: a plain classifier (the pretrained one) or a dual-head network,
//! with their parameters, their outputs on every set, and loading them back from a run
//! directory's checkpoints.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use hamos_api::{Backend, Error, HamosRng, ParamStore, Result};
use hamos_nn::{clone_backbone, Classifier, DualHeadNet};

use super::evaluate::{linear_head, ModelOutputs};
use super::probe::NetworkProbe;
use crate::config::RunConfig;
use crate::data::{ImageSet, Normalizer};
use crate::train::embed::{embed_classifier, embed_dual, Embedded};
use crate::train::{pretrain, state};

/// A network of a run.
#[derive(Debug, Clone)]
pub enum Network {
    /// A classifier without projection head (`backbone.*`).
    Classifier(Classifier),
    /// The dual-head network of HamOS.
    Dual(DualHeadNet),
}

/// A named model with its parameters.
#[derive(Debug, Clone)]
pub struct EvalModel {
    /// Name in reports and score paths.
    pub name: String,
    /// The network.
    pub network: Network,
    /// Its parameters.
    pub params: ParamStore,
}

impl EvalModel {
    /// The pretrained classifier, named `pretrained` (the post-hoc scorers' model).
    pub fn pretrained(pretrained: &crate::train::Pretrained) -> Self {
        EvalModel {
            name: crate::RunDir::PRETRAINED.into(),
            network: Network::Classifier(pretrained.net.clone()),
            params: pretrained.params.clone(),
        }
    }

    /// A fine-tuned dual-head network, named `name` (`hamos`, `cider_only`, ...).
    pub fn finetuned(name: &str, trained: &crate::train::Trained) -> Self {
        EvalModel {
            name: name.into(),
            network: Network::Dual(trained.net.clone()),
            params: trained.params.clone(),
        }
    }

    /// The classification part of the network.
    pub fn classifier(&self) -> &Classifier {
        match &self.network {
            Network::Classifier(net) => net,
            Network::Dual(net) => net.classifier(),
        }
    }

    /// The model's outputs on one set, in evaluation mode.
    pub fn embed(&self, set: &ImageSet, normalizer: &Normalizer, chunk: usize) -> Result<Embedded> {
        match &self.network {
            Network::Classifier(net) => embed_classifier(net, &self.params, set, normalizer, chunk),
            Network::Dual(net) => embed_dual(net, &self.params, set, normalizer, chunk),
        }
    }

    /// The outputs on the training set, the ID test set and each OOD set, with the head and the
    /// probe that input-perturbation scorers use.
    pub fn outputs(
        &self,
        train: &ImageSet,
        id: &ImageSet,
        ood: &[ImageSet],
        normalizer: &Normalizer,
        chunk: usize,
    ) -> Result<ModelOutputs> {
        let ood_rows = ood
            .iter()
            .map(|s| Ok((s.name.clone(), self.embed(s, normalizer, chunk)?)))
            .collect::<Result<_>>()?;
        let probe = NetworkProbe::new(self.classifier().clone(), self.params.clone(), normalizer)?;
        Ok(ModelOutputs {
            name: self.name.clone(),
            train: self.embed(train, normalizer, chunk)?,
            id: self.embed(id, normalizer, chunk)?,
            ood: ood_rows,
            head: Some(linear_head(&self.params, "backbone")?),
            probe: Some(Rc::new(probe)),
        })
    }
}

impl EvalModel {
    /// The model saved at `path` (named after the file): a dual-head network when `dual`
    /// (a training checkpoint; momentum and buffer are skipped), else a classifier whose names
    /// are `backbone.*` or the backbone's own.
    pub fn load(
        config: &RunConfig,
        backend: &Arc<dyn Backend>,
        path: &Path,
        classes: usize,
        dual: bool,
        rng: &mut HamosRng,
    ) -> Result<EvalModel> {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let backbone = clone_backbone(config.model.as_ref())?;
        if dual {
            let net = DualHeadNet::new(backbone, classes, config.train.feature_dim)?;
            let mut params = net.init_store(backend.clone(), rng)?;
            state::load_weights(path, &mut params)?;
            Ok(EvalModel { name, network: Network::Dual(net), params })
        } else {
            let net = Classifier::new(backbone, classes, "backbone")?;
            let mut params = net.init_store(backend.clone(), rng)?;
            pretrain::load_prefixed(&mut params, path)?;
            Ok(EvalModel { name, network: Network::Classifier(net), params })
        }
    }
}

/// The models saved in `dir/checkpoints`: `pretrained.safetensors` as a classifier, every other
/// `*.safetensors` as a fine-tuned dual-head network named after the file. Errors when there is
/// none, naming the folder and what to run.
pub fn load_run_models(config: &RunConfig, dir: &Path, classes: usize) -> Result<Vec<EvalModel>> {
    let folder = crate::RunDir::at(dir).checkpoints_dir();
    let entries = std::fs::read_dir(&folder).map_err(|source| Error::Io {
        op: "listing checkpoints (train first: `hamos run --out DIR` or `hamos train --out DIR`)",
        path: folder.clone(),
        source,
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Data(format!(
            "{} holds no checkpoint (*.safetensors): train first with `hamos run --out {}` or \
             `hamos train --out {}`",
            folder.display(),
            dir.display(),
            dir.display()
        )));
    }
    let backend = crate::open_backend(config)?;
    let mut rng = hamos_api::rng_from_seed(config.seed);
    let mut models = Vec::with_capacity(files.len());
    // The pretrained classifier first, as in `hamos run`'s reports.
    let fine_tuned = |p: &Path| p.file_stem().is_none_or(|n| n != crate::RunDir::PRETRAINED);
    files.sort_by_key(|p| fine_tuned(p));
    for path in files {
        let dual = fine_tuned(&path);
        models.push(EvalModel::load(config, &backend, &path, classes, dual, &mut rng)?);
    }
    Ok(models)
}

/// Named scorers with the rows they read, in report order.
pub type PlannedScorers = Vec<super::evaluate::PlannedScorer>;

/// Which scorers evaluate which model.
pub type ScorerPlan<'a> = dyn Fn(&EvalModel) -> Result<PlannedScorers> + 'a;

/// Everything one evaluation computed.
pub struct Evaluation {
    /// Each model's outputs on the training set, the ID test set and the OOD sets.
    pub outputs: Vec<ModelOutputs>,
    /// Each planned model x scorer's scores.
    pub scores: Vec<super::evaluate::Scores>,
    /// The metric records of every score set, averages included.
    pub records: Vec<super::evaluate::MetricRecord>,
    /// Eqn 14 per model.
    pub sphere: Vec<super::sphere::SphereMetrics>,
}

/// Extracts every model's outputs once, scores them with the scorers `plan` assigns, and
/// computes the OOD metrics and Eqn 14.
pub fn evaluate_models(
    models: &[EvalModel],
    plan: &ScorerPlan,
    sets: super::evaluate::TestImages,
    train: &ImageSet,
    normalizer: &Normalizer,
    observer: &dyn crate::pipeline::Observer,
) -> Result<Evaluation> {
    observer.phase_started("features", models.len() as u64, 0);
    let mut outputs = Vec::with_capacity(models.len());
    for model in models {
        outputs.push(model.outputs(train, sets.id, sets.ood, normalizer, sets.chunk)?);
        observer.phase_advanced("features", &model.name);
    }
    observer.phase_finished("features");
    let mut scores = Vec::new();
    let mut records = Vec::new();
    let mut sphere = Vec::with_capacity(models.len());
    for (model, out) in models.iter().zip(&outputs) {
        for planned in plan(model)? {
            let backend = model.params.backend().clone();
            let s = super::evaluate::score_model(&backend, out, &planned, Some(&sets))?;
            records.extend(super::evaluate::records(&s)?);
            scores.push(s);
        }
        sphere.push(super::sphere::sphere_metrics(&out.name, &out.train, &out.id, &out.ood, sets.groups)?);
    }
    Ok(Evaluation { outputs, scores, records, sphere })
}
