//! One HamOS fine-tuning step (Algorithm 2, lines 3-11): both views through the dual-head
//! network, cross-entropy, the ID contrastive loss, the buffer update, outlier synthesis and
//! the OOD-discernment loss on the outliers, then SGD and the EMA prototypes.

use hamos_api::{
    ContrastiveBatch, Error, Forward, OodLossForm, ParamStore, Result, RoundDiagnostics, RunConfig,
    SynthesisInput, Tensor,
};
use hamos_losses::cider::update_prototypes;
use hamos_losses::ood_discernment_loss;
use hamos_nn::optim::Sgd;
use hamos_nn::{cross_entropy, DualHeadNet};
use serde::Serialize;

use super::buffer::EmbeddingBuffer;

/// The loss terms and sampler statistics of one step (host scalars, for logs and bars).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepReport {
    /// Global step, from 0.
    pub step: usize,
    /// Epoch, from 0.
    pub epoch: usize,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Cross-entropy on both views.
    pub ce: f32,
    /// ID contrastive loss.
    pub id_con: f32,
    /// OOD-discernment loss in the form minimized (0 when no outliers).
    pub ood: f32,
    /// The total of Eqn 8.
    pub total: f32,
    /// Outliers synthesized.
    pub outliers: usize,
    /// Mean acceptance over the sampler's rounds (NaN when nothing was synthesized).
    pub acceptance: f64,
    /// The sampler's per-round diagnostics.
    pub rounds: Vec<RoundDiagnostics>,
    /// Milliseconds spent synthesizing (the buffer's bank and the sampler), within the step.
    pub synthesis_ms: f64,
}

/// Everything a step reads besides the network's parameters.
pub struct StepInputs<'a> {
    /// The run.
    pub config: &'a RunConfig,
    /// The network.
    pub net: &'a DualHeadNet,
    /// Both views `[2b, c, h, w]`: view 2 of row `i` is row `i + b`.
    pub views: &'a Tensor,
    /// Labels `[2b]` (`I64`) and the same on the host.
    pub labels: &'a Tensor,
    /// Host copy of `labels`.
    pub host_labels: &'a [i64],
    /// Learning rate of this step.
    pub learning_rate: f64,
    /// Whether to synthesize outliers and add the OOD-discernment term.
    pub with_outliers: bool,
}

/// Runs one step: updates `params`, `sgd` and `buffer`, returns the report. A non-finite
/// total stops with an error before anything is updated.
pub fn hamos_step(
    inputs: &StepInputs,
    params: &mut ParamStore,
    sgd: &mut Sgd,
    buffer: &mut EmbeddingBuffer,
    rng: &mut dyn rand::RngCore,
) -> Result<StepReport> {
    let config = inputs.config;
    let pass = Forward::train(params);
    let out = inputs.net.forward(&pass, inputs.views)?;
    let prototypes = params.get(DualHeadNet::PROTOTYPES)?.detach()?;
    let ce = cross_entropy(&out.logits, inputs.labels)?;
    let batch = ContrastiveBatch {
        embeddings: out.embeddings.clone(),
        labels: inputs.labels.clone(),
        prototypes: prototypes.clone(),
    };
    let id_con = config.loss.loss(&batch)?.reshape(&[])?;
    let detached = out.embeddings.detach()?;
    buffer.push(&detached.to_vec_f32()?, inputs.host_labels)?;

    let mut total = ce.add(&id_con)?;
    let (mut ood_value, mut outliers, mut rounds, mut synthesis_ms) = (0.0, 0, Vec::new(), 0.0);
    let mut moved_prototypes = None;
    if inputs.with_outliers && config.train.ood_weight > 0.0 {
        let started = std::time::Instant::now();
        let bank = buffer.bank(params.backend())?;
        let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
        let synthesis =
            config.sampler.synthesize(&input, config.energy.as_ref(), config.barrier.as_ref(), rng)?;
        // Lazy backends would defer the work: the outliers on the host mark the end.
        synthesis.outliers.to_vec_f32()?;
        synthesis_ms = started.elapsed().as_secs_f64() * 1e3;
        outliers = synthesis.tags.len();
        rounds = synthesis.rounds;
        if outliers > 0 {
            // Gradient reaches the network through prototypes moved by this batch's embeddings,
            // as CIDER's in-loss update does; the outliers themselves are detached samples.
            let moved = update_prototypes(
                &prototypes,
                &out.embeddings,
                inputs.labels,
                config.train.prototype_momentum,
            )?;
            let printed = ood_discernment_loss(&synthesis.outliers, &moved, config.train.ood_temperature)?;
            let ood = match config.train.ood_loss {
                OodLossForm::Uniform => printed.neg()?,
                OodLossForm::AsPrinted => printed,
            }
            .reshape(&[])?;
            ood_value = ood.to_scalar_f32()?;
            total = total.add(&ood.scale(config.train.ood_weight)?)?;
            moved_prototypes = Some(moved);
        }
    }
    let updates = pass.into_updates();
    let total_value = total.to_scalar_f32()?;
    let (ce_value, id_value) = (ce.to_scalar_f32()?, id_con.to_scalar_f32()?);
    if !total_value.is_finite() {
        return Err(Error::Data(format!(
            "the loss went non-finite (cross-entropy {ce_value}, ID contrastive {id_value}, OOD {ood_value}); \
             the step was not applied"
        )));
    }
    let grads = {
        let trainable = params.trainable();
        let wrt: Vec<&Tensor> = trainable.iter().map(|(_, t)| *t).collect();
        total.gradients_release(&wrt)?
    };
    sgd.step(params, &grads, inputs.learning_rate)?;
    params.apply_updates(updates)?;
    // The EMA of this batch is the moved prototypes of the OOD term, without their history.
    let ema = match moved_prototypes {
        Some(moved) => moved.detach()?,
        None => update_prototypes(&prototypes, &detached, inputs.labels, config.train.prototype_momentum)?,
    };
    params.set(DualHeadNet::PROTOTYPES, &ema)?;
    let acceptance = if rounds.is_empty() {
        f64::NAN
    } else {
        rounds.iter().map(|r| r.acceptance_rate).sum::<f64>() / rounds.len() as f64
    };
    Ok(StepReport {
        learning_rate: inputs.learning_rate,
        ce: ce_value,
        id_con: id_value,
        ood: ood_value,
        total: total_value,
        outliers,
        acceptance,
        rounds,
        synthesis_ms,
        ..StepReport::default()
    })
}
