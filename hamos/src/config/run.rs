//! [`RunConfig`], the whole run, and its `[train]` section ([`TrainConfig`], [`OodLossForm`]).

use std::path::PathBuf;

use hamos_api::config::{finite_in, positive};
use hamos_api::{Backbone, ContrastiveLoss, Error, IdBarrier, OodnessEnergy, Result, Sampler, Scorer};
use serde::{Deserialize, Serialize};

use super::{ConfigSources, DataConfig};

/// A whole run: backend, device, seed, the six plugins and the training schedule.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The one seed every random draw of the run derives from.
    pub seed: u64,
    /// `candle` or `tch` (whichever are compiled in).
    pub backend: String,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// CPU threads for the backend; `0` lets it choose.
    pub threads: usize,
    /// Backbone network (section `model`).
    pub model: Box<dyn Backbone>,
    /// Outlier sampler (section `sampler`).
    pub sampler: Box<dyn Sampler>,
    /// OOD-ness energy (section `energy`).
    pub energy: Box<dyn OodnessEnergy>,
    /// ID barrier (section `barrier`).
    pub barrier: Box<dyn IdBarrier>,
    /// ID contrastive loss (section `loss`).
    pub loss: Box<dyn ContrastiveLoss>,
    /// Inference-time scorer (section `scorer`).
    pub scorer: Box<dyn Scorer>,
    /// Training schedule (section `train`).
    pub train: TrainConfig,
    /// Data sets, split, normalization, augmentation (section `data`).
    #[serde(default)]
    pub data: DataConfig,
}

/// The training schedule, defaults from the paper's Table 4 (CIFAR-10 column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Fine-tuning epochs.
    pub epochs: usize,
    /// ID mini-batch size.
    pub batch_size: usize,
    /// Initial SGD learning rate (cosine-annealed to 0).
    pub learning_rate: f64,
    /// SGD momentum (fine-tuning and pretraining).
    pub momentum: f64,
    /// Nesterov momentum in fine-tuning (PyTorch's form). On by default, as the authors'
    /// trainer (`torch.optim.SGD(..., nesterov=True)` in `openood/trainers/hamos_trainer.py`);
    /// pretraining always uses plain momentum.
    pub nesterov: bool,
    /// SGD weight decay.
    pub weight_decay: f64,
    /// Dimension `d` of the hyperspherical embedding.
    pub feature_dim: usize,
    /// EMA factor of the class prototypes.
    pub prototype_momentum: f64,
    /// Embeddings kept per class in the ID buffer (`S`).
    pub buffer_size: usize,
    /// Weight `lambda_d` of the OOD-discernment loss (Eqn 8).
    pub ood_weight: f64,
    /// Temperature `tau` of the OOD-discernment loss (Eqn 7). Eqn 7 comes from the class vMF
    /// likelihood of Eqn 6, so `tau = 1 / kappa_j` is the *class* concentration, the same
    /// temperature as the ID contrastive loss (CIDER's 0.1; the authors' trainer passes its
    /// `temp = 0.1` to both). It is not the KDE bandwidth `kappa = 2` of Eqn 5 (a reading that
    /// gave 0.5 and an OOD gradient about 1 % of the compactness term's).
    pub ood_temperature: f64,
    /// Which OOD-discernment term is minimized (see [`OodLossForm`]).
    pub ood_loss: OodLossForm,
    /// A pretrained classifier (safetensors, names `backbone.*` or the backbone's own PyTorch
    /// names); when absent the trainer pretrains one with cross-entropy and caches it.
    pub pretrained: Option<PathBuf>,
    /// Cross-entropy pretraining epochs (Appendix F's warm-up), when no `pretrained` is given.
    pub pretrain_epochs: usize,
    /// Initial learning rate of the pretraining (cosine-annealed to 0).
    pub pretrain_learning_rate: f64,
    /// Whether pretraining augments its images (`[data.augment]`: crop and flip) or sees them
    /// as they are (faster to fit on small data sets; fine-tuning always augments).
    pub pretrain_augment: bool,
}

/// The OOD-discernment term of Eqn 8: which quantity, on what, reaching the network how.
///
/// The outliers are detached points on the sphere and the prototypes are EMA buffers, so Eqn 7
/// itself has no gradient path to the network except through the prototypes that this batch's
/// embeddings move (CIDER's in-loss update, factor `1 - m = 0.05` per row). The variants:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OodLossForm {
    /// The paper's reading: the cross-entropy from the uniform assignment to each outlier's
    /// posterior over the prototypes moved by this batch (the negation of Eqn 7), minimal when
    /// outliers belong to no class. Gradient reaches the network through the moved prototypes.
    Uniform,
    /// Eqn 7 exactly as printed (its value is the negation of `uniform`'s), for the ablation:
    /// minimizing it pushes outliers towards a confident class.
    AsPrinted,
    /// The authors' released trainer (`CompLoss_ood` in `openood/trainers/hamos_trainer.py`):
    /// the same uniform cross-entropy, with the sign flipped inside the softmax
    /// (`mean_j -log softmax(-z . mu / tau)_j`) and scaled by `tau / 0.07`, computed on the *ID
    /// batch's* embeddings against the detached updated prototypes. The synthesized outliers only
    /// decide whether the term is added; they never enter it.
    Released,
    /// Beyond the paper: each outlier is an extra negative in the compactness softmax of every
    /// ID embedding, `mean_i log(1 + sum_k exp(z_i . o_k / tau) / sum_j exp(z_i . mu_j / tau))`
    /// (prototypes detached), so every outlier has its own gradient path to the network and ID
    /// embeddings are pushed away from the outliers towards their prototypes.
    OutlierNegatives,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            batch_size: 128,
            learning_rate: 0.01,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4,
            feature_dim: 128,
            prototype_momentum: 0.95,
            buffer_size: 1000,
            ood_weight: 0.1,
            ood_temperature: 0.1,
            ood_loss: OodLossForm::Uniform,
            pretrained: None,
            pretrain_epochs: 5,
            pretrain_learning_rate: 0.05,
            pretrain_augment: true,
        }
    }
}

impl TrainConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        positive("train.epochs", self.epochs)?;
        positive("train.batch_size", self.batch_size)?;
        positive("train.feature_dim", self.feature_dim)?;
        positive("train.buffer_size", self.buffer_size)?;
        finite_in("train.learning_rate", self.learning_rate, 0.0, f64::INFINITY, false)?;
        finite_in("train.momentum", self.momentum, 0.0, 1.0, true)?;
        if self.nesterov && self.momentum == 0.0 {
            return Err(Error::invalid("train.nesterov", "Nesterov momentum needs train.momentum > 0"));
        }
        finite_in("train.weight_decay", self.weight_decay, 0.0, f64::INFINITY, true)?;
        finite_in("train.prototype_momentum", self.prototype_momentum, 0.0, 1.0, true)?;
        finite_in("train.ood_weight", self.ood_weight, 0.0, f64::INFINITY, true)?;
        finite_in("train.ood_temperature", self.ood_temperature, 0.0, f64::INFINITY, false)?;
        finite_in("train.pretrain_learning_rate", self.pretrain_learning_rate, 0.0, f64::INFINITY, false)?;
        if let Some(path) = &self.pretrained {
            if !path.is_file() {
                return Err(Error::invalid("train.pretrained", format!("{} is not a file", path.display())));
            }
        } else {
            positive("train.pretrain_epochs", self.pretrain_epochs)?;
        }
        Ok(())
    }
}

impl RunConfig {
    /// Loads the code defaults (Table 4; no preset), a file, the environment and overrides
    /// (`hamos::load_config` starts from the shipped preset instead).
    pub fn load(file: Option<PathBuf>, overrides: Vec<String>) -> Result<Self> {
        ConfigSources { base: None, file, env: true, overrides }.load()
    }

    /// Validates every section, naming the field at fault.
    pub fn validate(&self) -> Result<()> {
        let compiled = hamos_api::backend::backend_names();
        // Without any backend linked the name is checked when opened.
        if !compiled.is_empty() && !compiled.contains(&self.backend.as_str()) {
            return Err(Error::invalid(
                "backend",
                format!(
                    "`{}` is not a compiled backend; compiled: {} (`tch` needs `--features tch`)",
                    self.backend,
                    compiled.join(", ")
                ),
            ));
        }
        self.device.parse::<hamos_api::DeviceSpec>()?;
        self.model.validate()?;
        self.sampler.validate()?;
        self.energy.validate()?;
        self.barrier.validate()?;
        self.loss.validate()?;
        self.scorer.validate()?;
        self.train.validate()?;
        self.data.validate()
    }

    /// The resolved config as TOML. Values held as `f32` (the data's `mean` and `std`) print as
    /// written (`0.286`, not `0.28600001335144043`).
    pub fn to_toml(&self) -> Result<String> {
        let mut table =
            toml::Table::try_from(self).map_err(|e| Error::Config(format!("serializing config: {e}")))?;
        shortest_floats(&mut table);
        toml::to_string_pretty(&table).map_err(|e| Error::Config(format!("serializing config: {e}")))
    }
}

/// Replaces every float that is exactly an `f32` by the shortest decimal of that `f32`.
fn shortest_floats(table: &mut toml::Table) {
    fn tidy(value: &mut toml::Value) {
        match value {
            toml::Value::Float(x) => {
                let single = *x as f32;
                if f64::from(single) == *x && single.is_finite() {
                    if let Ok(short) = single.to_string().parse::<f64>() {
                        *x = short;
                    }
                }
            }
            toml::Value::Array(items) => items.iter_mut().for_each(tidy),
            toml::Value::Table(table) => table.iter_mut().for_each(|(_, v)| tidy(v)),
            _ => {}
        }
    }
    table.iter_mut().for_each(|(_, v)| tidy(v));
}
