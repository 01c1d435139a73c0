//! Training (Algorithm 2): cross-entropy pretraining when no pretrained classifier is given,
//! then HamOS fine-tuning of the dual-head network with synthesized outliers, with checkpoints
//! at every epoch and exact resume.
//!
//! Before the first step the class prototypes are set to the normalized class means of the
//! training set's embeddings under the starting network, and the buffer is filled with the last
//! `S` training embeddings of each class from the same pass, so outliers are synthesized from
//! the first step on (never from test data).

pub mod buffer;
pub mod embed;
mod feed;
pub mod pretrain;
pub mod state;
pub mod step;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hamos_api::{Error, ParamStore, Result};
use hamos_nn::optim::{CosineSchedule, Sgd, SgdConfig};
use hamos_nn::{clone_backbone, Classifier, DualHeadNet};
use serde::Serialize;

pub use feed::{epoch_batches, Feed, FeedBatch};

use crate::config::RunConfig;
use crate::data::{ImageSet, Normalizer};
use crate::pipeline::Observer;
use buffer::EmbeddingBuffer;
use embed::{embed_dual, Embedded};
use step::{hamos_step, StepInputs, StepReport};

/// The ID data of a run, split and ready.
pub struct Prepared {
    /// Training images (validation split held out).
    pub train: Arc<ImageSet>,
    /// The validation split.
    pub validation: ImageSet,
    /// Pixels to network inputs.
    pub normalizer: Normalizer,
    /// Number of classes.
    pub classes: usize,
}

/// Loads and splits the ID training data of `config`.
pub fn prepare(config: &RunConfig) -> Result<Prepared> {
    let data = &config.data;
    let shape = config.model.input_shape();
    let full = crate::data::load(&data.train, config.seed, Some(shape))?;
    if full.shape != shape {
        return Err(Error::Data(format!(
            "training images of `{}` are {:?}, the model `{}` expects {shape:?}",
            full.name,
            full.shape,
            config.model.typetag_name()
        )));
    }
    crate::data::check_id_set(&full, full.classes)?;
    let limited =
        if data.train_limit > 0 { crate::data::limit_per_class(&full, data.train_limit)? } else { full };
    let (train, validation) = crate::data::split_validation(&limited, data.validation_fraction, config.seed)?;
    let normalizer = Normalizer::from_config(data)?;
    normalizer.check(shape)?;
    if train.len() < config.train.batch_size {
        return Err(Error::Data(format!(
            "{} training images are fewer than one batch of {}",
            train.len(),
            config.train.batch_size
        )));
    }
    Ok(Prepared { classes: train.classes, train: Arc::new(train), validation, normalizer })
}

/// How to run the fine-tuning.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Where to save the model, the optimizer and the buffer after every epoch (a run's
    /// `checkpoints/<label>.safetensors`); `None` keeps everything in memory.
    pub checkpoint: Option<PathBuf>,
    /// Name of this fine-tuning in files and bars (`hamos`, `cider_only`, ...).
    pub label: String,
    /// Synthesize outliers and add the OOD-discernment term (false: the ID-loss-only baseline).
    pub with_outliers: bool,
    /// Continue from `checkpoint` when that file exists.
    pub resume: bool,
    /// Stop after this many epochs of this process (tests simulate a kill with it).
    pub stop_after_epochs: Option<usize>,
}

impl TrainOptions {
    /// Fine-tuning from scratch in memory: with outliers the `hamos` model, without them the
    /// ID-loss-only `<loss>_only` model ([`crate::train_label`]).
    pub fn new(config: &RunConfig, with_outliers: bool) -> Self {
        TrainOptions {
            checkpoint: None,
            label: crate::train_label(config, with_outliers),
            with_outliers,
            resume: false,
            stop_after_epochs: None,
        }
    }

    /// The same, saved after every epoch as this model's checkpoint in run directory `dir`.
    pub fn saved_in(self, dir: &crate::RunDir) -> Self {
        TrainOptions { checkpoint: Some(dir.checkpoint(&self.label)), ..self }
    }
}

/// One epoch's summary.
#[derive(Debug, Clone, Serialize)]
pub struct EpochSummary {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean total loss.
    pub loss: f64,
    /// Mean acceptance of the sampler (absent without outliers).
    pub acceptance: Option<f64>,
    /// Mean norm of the ID contrastive loss's gradient on the embeddings.
    pub grad_id_con: f64,
    /// Mean norm of the weighted OOD term's gradient on the embeddings (absent without outliers).
    pub grad_ood: Option<f64>,
    /// Mean of the steps' `grad_ood / grad_id_con` (absent without outliers).
    pub ood_grad_share: Option<f64>,
    /// Accuracy on the validation split.
    pub validation_accuracy: f64,
    /// Images per second over the epoch (both views count once).
    pub images_per_second: f64,
}

impl EpochSummary {
    /// One line for logs and reports: loss, gradient norms on the embeddings, acceptance,
    /// validation accuracy, throughput (`n/a` where a value does not apply).
    pub fn describe(&self) -> String {
        format!(
            "loss {:.4}, |grad ID| {:.4}, |grad OOD| {} (OOD/ID {}), acceptance {}, validation accuracy {:.4}, {:.0} img/s",
            self.loss,
            self.grad_id_con,
            optional(self.grad_ood, 4),
            optional(self.ood_grad_share, 3),
            optional(self.acceptance, 3),
            self.validation_accuracy,
            self.images_per_second
        )
    }
}

/// `value` with `digits` decimals, or `n/a`.
fn optional(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// The mean of the values present.
#[derive(Debug, Default, Clone, Copy)]
struct MeanOf {
    sum: f64,
    n: usize,
}

impl MeanOf {
    fn push(&mut self, value: Option<f64>) {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            self.sum += v;
            self.n += 1;
        }
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// A trained pair: the pretrained classifier and the fine-tuned dual-head network.
pub struct Trained {
    /// The network.
    pub net: DualHeadNet,
    /// Its parameters.
    pub params: ParamStore,
    /// The per-epoch summaries of this process.
    pub history: Vec<EpochSummary>,
    /// The checkpoint written last (none in memory).
    pub checkpoint: Option<PathBuf>,
}

/// The pretrained classifier of a run (loaded, cached, or trained now).
pub struct Pretrained {
    /// The classifier (`backbone.*`).
    pub net: Classifier,
    /// Its parameters.
    pub params: ParamStore,
    /// Where it came from, for the log.
    pub source: String,
}

/// Loads or trains the pretrained classifier of `config`, reusing one trained with the same
/// settings from the folder `cache` (and saving it there) when given.
pub fn pretrained(
    config: &RunConfig,
    data: &Prepared,
    cache: Option<&Path>,
    observer: &dyn Observer,
) -> Result<Pretrained> {
    let backend = crate::open_backend(config)?;
    let backbone = clone_backbone(config.model.as_ref())?;
    let (net, params, source) = pretrain::pretrained(config, backbone, data, &backend, cache, observer)?;
    Ok(Pretrained { net, params, source })
}

/// A seed for one stream of draws at one step, from the run's seed (splitmix64 mixing).
pub fn stream_seed(seed: u64, epoch: usize, step: usize, stream: u64) -> u64 {
    let mut z =
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (step as u64).rotate_left(32) ^ stream;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const SAMPLER_STREAM: u64 = 0x5341_4d50;
const HEAD_STREAM: u64 = 0x4845_4144;

/// Fine-tunes the dual-head network from `start` with `config` (Algorithm 2).
pub fn finetune(
    config: &RunConfig,
    data: &Prepared,
    start: &Pretrained,
    options: &TrainOptions,
    observer: &dyn Observer,
) -> Result<Trained> {
    let StartState { net, mut params, mut buffer } = start_state(config, data, start)?;
    let chunk = eval_chunk(config);

    let epochs = config.train.epochs;
    let (mut sgd, schedule, steps_per_epoch) =
        optimizer(config, data, config.train.learning_rate, epochs, config.train.nesterov)?;
    let checkpoint = options.checkpoint.as_deref();
    let last_good = checkpoint.map_or_else(|| "in memory only".to_string(), |p| p.display().to_string());
    let mut at = state::Position { epoch: 0, step: 0, seed: config.seed };
    if let Some(checkpoint) = checkpoint.filter(|p| options.resume && p.is_file()) {
        at = state::load(checkpoint, &mut params, &mut sgd, &mut buffer)?;
        if at.seed != config.seed {
            return Err(Error::Data(format!(
                "{} was trained with seed {}, the config says {}",
                checkpoint.display(),
                at.seed,
                config.seed
            )));
        }
        observer.message(&format!("{}: resuming after epoch {} (step {})", options.label, at.epoch, at.step));
    }

    let phase = format!("fine-tune ({})", options.label);
    observer.phase_started(&phase, (epochs * steps_per_epoch) as u64, at.step as u64);
    let mut history = Vec::new();
    let first_epoch = at.epoch;
    for epoch in first_epoch..epochs {
        if options.stop_after_epochs.is_some_and(|n| epoch - first_epoch >= n) {
            break;
        }
        let started = std::time::Instant::now();
        let (mut loss_sum, mut images) = (0.0, 0);
        let (mut acceptance, mut grad_id, mut grad_ood, mut share) =
            (MeanOf::default(), MeanOf::default(), MeanOf::default(), MeanOf::default());
        let feed = Feed { config, data, two_views: true, augment: true, seed: config.seed };
        for (k, batch) in epoch_batches(&feed, epoch)?.enumerate() {
            let batch = batch?;
            let step_started = std::time::Instant::now();
            let state = (&mut params, &mut sgd, &mut buffer);
            let lr = schedule.rate(at.step);
            let mut report =
                step_on_batch(config, &net, state, &batch, lr, options.with_outliers, (epoch, k)).map_err(
                    |e| {
                        Error::Data(format!(
                            "{} fine-tuning, epoch {} step {}: {e}; the last good checkpoint is {last_good}",
                            options.label,
                            epoch + 1,
                            at.step,
                        ))
                    },
                )?;
            report.epoch = epoch + 1;
            report.step = at.step;
            report.model.clone_from(&options.label);
            report.phase = "finetune";
            observer.step(&report)?;
            loss_sum += f64::from(report.total);
            acceptance.push(report.acceptance);
            grad_id.push(Some(report.grad_id_con));
            grad_ood.push(report.grad_ood);
            share.push(report.ood_grad_share);
            images += batch.labels.len() / 2;
            let rate = (batch.labels.len() / 2) as f64 / step_started.elapsed().as_secs_f64();
            let status = format!(
                "ep {}/{epochs} ce {:.3} id {:.3} ood {:.3} ood/id grad {} accept {} {rate:.0} img/s",
                epoch + 1,
                report.ce,
                report.id_con,
                report.ood,
                optional(report.ood_grad_share, 3),
                optional(report.acceptance, 2),
            );
            observer.phase_advanced(&phase, &status);
            at.step += 1;
        }
        at.epoch = epoch + 1;
        let validation = embed_dual(&net, &params, &data.validation, &data.normalizer, chunk)?;
        let summary = EpochSummary {
            epoch: epoch + 1,
            loss: loss_sum / steps_per_epoch.max(1) as f64,
            acceptance: acceptance.mean(),
            grad_id_con: grad_id.mean().unwrap_or(0.0),
            grad_ood: grad_ood.mean(),
            ood_grad_share: share.mean(),
            validation_accuracy: validation.accuracy(),
            images_per_second: images as f64 / started.elapsed().as_secs_f64(),
        };
        observer.epoch(&options.label, &summary, epochs);
        history.push(summary);
        if let Some(checkpoint) = checkpoint {
            state::save(checkpoint, &params, &sgd, &buffer, at)?;
        }
    }
    observer.phase_finished(&phase);
    Ok(Trained { net, params, history, checkpoint: checkpoint.map(Path::to_path_buf) })
}

/// Uploads `batch` (both views) and runs one HamOS step on it, with the sampler's draws from
/// stream `(epoch, k)` of the run's seed.
pub fn step_on_batch(
    config: &RunConfig,
    net: &DualHeadNet,
    (params, sgd, buffer): (&mut ParamStore, &mut Sgd, &mut EmbeddingBuffer),
    batch: &FeedBatch,
    learning_rate: f64,
    with_outliers: bool,
    (epoch, k): (usize, usize),
) -> Result<StepReport> {
    let backend = params.backend().clone();
    let views = backend.from_f32(&batch.images, &batch.dims())?;
    let labels = backend.from_i64(&batch.labels, &[batch.labels.len()])?;
    let inputs = StepInputs {
        config,
        net,
        views: &views,
        labels: &labels,
        host_labels: &batch.labels,
        learning_rate,
        with_outliers,
    };
    let mut rng = hamos_api::rng_from_seed(stream_seed(config.seed, epoch, k, SAMPLER_STREAM));
    hamos_step(&inputs, params, sgd, buffer, &mut rng)
}

/// SGD with the run's momentum and weight decay starting at `learning_rate` (Nesterov's form
/// when `nesterov`), its cosine schedule over `epochs`, and the steps per epoch.
pub fn optimizer(
    config: &RunConfig,
    data: &Prepared,
    learning_rate: f64,
    epochs: usize,
    nesterov: bool,
) -> Result<(Sgd, CosineSchedule, usize)> {
    let sgd_config = SgdConfig {
        learning_rate,
        momentum: config.train.momentum,
        weight_decay: config.train.weight_decay,
        nesterov,
    };
    let steps_per_epoch = data.train.len() / config.train.batch_size;
    let schedule = CosineSchedule { base: learning_rate, min: 0.0, total: epochs * steps_per_epoch };
    Ok((Sgd::new(sgd_config)?, schedule, steps_per_epoch))
}

/// The dual-head network at the start of fine-tuning.
pub struct StartState {
    /// The network.
    pub net: DualHeadNet,
    /// Its parameters: the pretrained backbone and `fc`, a fresh projection head, prototypes.
    pub params: ParamStore,
    /// The embedding buffer, filled from the training set.
    pub buffer: EmbeddingBuffer,
}

/// Builds the dual-head network from the pretrained classifier, sets the prototypes to the
/// normalized class means of the training embeddings and fills the buffer from the same pass.
pub fn start_state(config: &RunConfig, data: &Prepared, start: &Pretrained) -> Result<StartState> {
    let backend = start.params.backend().clone();
    let backbone = clone_backbone(config.model.as_ref())?;
    let net = DualHeadNet::new(backbone, data.classes, config.train.feature_dim)?;
    let mut params =
        net.init_store(backend.clone(), &mut hamos_api::rng_from_seed(config.seed ^ HEAD_STREAM))?;
    for (name, param) in start.params.iter() {
        params.set(name, &param.tensor)?;
    }
    let start_pass = embed_dual(&net, &params, &data.train, &data.normalizer, eval_chunk(config))?;
    params.set(DualHeadNet::PROTOTYPES, &class_mean_prototypes(&start_pass, &backend)?)?;
    let mut buffer = EmbeddingBuffer::new(data.classes, config.train.buffer_size, config.train.feature_dim)?;
    buffer.push(&start_pass.embeddings, start_pass.labels.as_deref().unwrap_or(&[]))?;
    Ok(StartState { net, params, buffer })
}

/// Images per evaluation-mode chunk.
pub fn eval_chunk(config: &RunConfig) -> usize {
    config.train.batch_size.max(64)
}

/// Normalized class means of `embedded`'s embeddings, `[classes, d]`.
pub fn class_mean_prototypes(
    embedded: &Embedded,
    backend: &Arc<dyn hamos_api::Backend>,
) -> Result<hamos_api::Tensor> {
    let (classes, d) = (embedded.classes, embedded.embedding_dim);
    let labels =
        embedded.labels.as_deref().ok_or_else(|| Error::Data("prototypes need labelled data".into()))?;
    let mut sums = vec![0f64; classes * d];
    let mut counts = vec![0usize; classes];
    for (row, &label) in embedded.embeddings.chunks(d).zip(labels) {
        let class = label as usize;
        counts[class] += 1;
        for (s, v) in sums[class * d..(class + 1) * d].iter_mut().zip(row) {
            *s += f64::from(*v);
        }
    }
    if let Some(empty) = counts.iter().position(|&n| n == 0) {
        return Err(Error::Data(format!("class {empty} has no training images: its prototype is undefined")));
    }
    let mut means = vec![0f32; classes * d];
    for class in 0..classes {
        let row = &sums[class * d..(class + 1) * d];
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        for (m, s) in means[class * d..(class + 1) * d].iter_mut().zip(row) {
            *m = (s / norm) as f32;
        }
    }
    backend.from_f32(&means, &[classes, d])
}
