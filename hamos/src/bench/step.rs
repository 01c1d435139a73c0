//! `hamos bench step`: the HamOS fine-tuning step as the trainer runs it (two augmented views
//! from the loader, forward, cross-entropy, ID contrastive loss, buffer update, synthesis, OOD
//! term, backward, SGD, EMA prototypes) on the run's data, split into data, network and
//! synthesis time.

use std::time::Instant;

use hamos_api::{Error, Result};
use hamos_nn::{clone_backbone, Classifier};

use super::median;
use crate::config::RunConfig;
use crate::train::{self, Pretrained};
use crate::train::{epoch_batches, Feed};

/// Medians of the timed steps, in milliseconds.
#[derive(Debug, Clone)]
pub struct StepTiming {
    /// Backend name.
    pub backend: String,
    /// Images per step (each image counted once; the network sees two views of it).
    pub batch: usize,
    /// Whole step, data included.
    pub step_ms: f64,
    /// Waiting for the loader's batch (decoding, augmentation, normalization).
    pub data_ms: f64,
    /// Synthesis (the buffer's bank and the sampler).
    pub synthesis_ms: f64,
    /// Everything else: uploads, forward, losses, backward, SGD, prototypes.
    pub network_ms: f64,
}

impl StepTiming {
    /// Images per second at the median step time.
    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 / (self.step_ms / 1e3)
    }
}

/// Times `steps` fine-tuning steps of `config` (after `warmup` untimed ones) from a randomly
/// initialized classifier (the step's cost does not depend on the weights).
pub fn time_hamos_step(config: &RunConfig, warmup: usize, steps: usize) -> Result<StepTiming> {
    if steps == 0 {
        return Err(Error::Config("bench step: --steps must be at least 1".into()));
    }
    let data = train::prepare(config)?;
    let backend = crate::open_backend(config)?;
    let net = Classifier::new(clone_backbone(config.model.as_ref())?, data.classes, "backbone")?;
    let params = net.init_store(backend.clone(), &mut hamos_api::rng_from_seed(config.seed))?;
    let start = Pretrained { net, params, source: "random initialization".into() };
    let train::StartState { net, mut params, mut buffer } = train::start_state(config, &data, &start)?;
    let (mut sgd, _, steps_per_epoch) =
        train::optimizer(config, &data, config.train.learning_rate, 1, config.train.nesterov)?;
    if warmup + steps > steps_per_epoch {
        return Err(Error::Config(format!(
            "bench step: {} steps do not fit in one epoch of {steps_per_epoch} batches",
            warmup + steps
        )));
    }
    let feed = Feed { config, data: &data, two_views: true, augment: true, seed: config.seed };
    let mut batches = epoch_batches(&feed, 0)?;
    let (mut step_ms, mut data_ms, mut synthesis_ms, mut network_ms) = (vec![], vec![], vec![], vec![]);
    let mut batch_size = 0;
    for k in 0..warmup + steps {
        let started = Instant::now();
        let batch = batches.next().ok_or_else(|| Error::Data("bench step: the loader ran dry".into()))??;
        let waited = started.elapsed().as_secs_f64() * 1e3;
        let state = (&mut params, &mut sgd, &mut buffer);
        let report =
            train::step_on_batch(config, &net, state, &batch, config.train.learning_rate, true, (0, k))?;
        let total = started.elapsed().as_secs_f64() * 1e3;
        if k >= warmup {
            batch_size = batch.labels.len() / 2;
            step_ms.push(total);
            data_ms.push(waited);
            synthesis_ms.push(report.synthesis_ms);
            network_ms.push(total - waited - report.synthesis_ms);
        }
    }
    Ok(StepTiming {
        backend: config.backend.clone(),
        batch: batch_size,
        step_ms: median(step_ms),
        data_ms: median(data_ms),
        synthesis_ms: median(synthesis_ms),
        network_ms: median(network_ms),
    })
}

/// A Markdown table of `timings` (medians; the parts need not add up to the step's median).
pub fn table(model: &str, timings: &[StepTiming]) -> String {
    let mut out = String::from(
        "| model | backend | batch | ms / step | images / s | data ms | network ms | synthesis ms | synthesis share |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for t in timings {
        out.push_str(&format!(
            "| {model} | {} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} % |\n",
            t.backend,
            t.batch,
            t.step_ms,
            t.images_per_second(),
            t.data_ms,
            t.network_ms,
            t.synthesis_ms,
            100.0 * t.synthesis_ms / t.step_ms
        ));
    }
    out
}
