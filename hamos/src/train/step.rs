//! One HamOS fine-tuning step (Algorithm 2, lines 3-11): both views through the dual-head
//! network, cross-entropy, the ID contrastive loss, the buffer update, outlier synthesis and
//! the OOD-discernment loss on the outliers, then SGD and the EMA prototypes.

use hamos_api::{
    ContrastiveBatch, Error, Forward, ParamStore, Result, RoundDiagnostics, SynthesisInput, Tensor,
};
use hamos_losses::cider::update_prototypes;
use hamos_losses::{ood_discernment_loss, outlier_negative_loss, released_ood_loss};
use hamos_nn::optim::Sgd;
use hamos_nn::{cross_entropy, DualHeadNet};
use serde::Serialize;

use super::buffer::EmbeddingBuffer;
use crate::config::{OodLossForm, RunConfig};

/// The loss terms and sampler statistics of one step (host scalars, for logs and bars).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepReport {
    /// The model being trained (`hamos`, `cider_only`, ...), so that one file can hold several.
    pub model: String,
    /// The training phase: `finetune` (pretraining writes no step lines).
    pub phase: &'static str,
    /// Global step, from 0.
    pub step: usize,
    /// Epoch, from 1 (as in logs and reports).
    pub epoch: usize,
    /// Learning rate used.
    pub learning_rate: f64,
    /// Cross-entropy on both views.
    pub ce: f32,
    /// ID contrastive loss.
    pub id_con: f32,
    /// OOD-discernment term in the form minimized, before its weight (0 when no outliers).
    pub ood: f32,
    /// The total of Eqn 8: `ce + id_con + ood_weight * ood`.
    pub total: f32,
    /// Norm of the ID contrastive loss's gradient on the batch's embeddings `[2b, d]`.
    pub grad_id_con: f64,
    /// Norm of the weighted OOD term's gradient (`ood_weight * dL_ood / dz`) on the same
    /// embeddings; absent without outliers. Cross-entropy acts on the other head and has none.
    pub grad_ood: Option<f64>,
    /// `grad_ood / grad_id_con`: how much the outliers move the embeddings next to the ID loss.
    pub ood_grad_share: Option<f64>,
    /// Outliers synthesized.
    pub outliers: usize,
    /// Mean acceptance over the sampler's rounds (absent when nothing was synthesized).
    pub acceptance: Option<f64>,
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

/// The ID and OOD terms of one batch as functions of its embeddings, with their gradients on
/// them. Both terms depend on the network only through the embeddings, so the network's
/// gradient is the backward pass of `ce + sum(embeddings * (g_id + w g_ood))` (exact, and the
/// per-term gradients come for free).
pub struct EmbeddingTerms {
    /// ID contrastive loss (scalar).
    pub id_con: f32,
    /// OOD term in the form minimized (0 without outliers).
    pub ood: f32,
    /// `dL_id / dz`, `[n, d]`.
    pub id_grad: Tensor,
    /// `dL_ood / dz` (unweighted), `[n, d]`, when there are outliers.
    pub ood_grad: Option<Tensor>,
    /// The prototypes moved by this batch's embeddings (CIDER's EMA), detached.
    pub moved_prototypes: Tensor,
}

/// Evaluates the ID loss and, when `outliers` is given, the OOD term of `form` on the
/// embeddings `z` (values only: a fresh leaf is made of them).
pub fn embedding_terms(
    config: &RunConfig,
    z: &Tensor,
    labels: &Tensor,
    prototypes: &Tensor,
    outliers: Option<&Tensor>,
) -> Result<EmbeddingTerms> {
    let leaf = z.backend().variable(&z.detach()?)?;
    let batch =
        ContrastiveBatch { embeddings: leaf.clone(), labels: labels.clone(), prototypes: prototypes.clone() };
    let id_con = config.loss.loss(&batch)?.reshape(&[])?;
    let id_grad = id_con.gradients(&[&leaf])?.remove(0);
    let momentum = config.train.prototype_momentum;
    let moved = update_prototypes(prototypes, &leaf, labels, momentum)?;
    let (mut ood_value, mut ood_grad) = (0.0, None);
    if let Some(outliers) = outliers {
        let ood = ood_term(config.train.ood_loss, config.train.ood_temperature, &leaf, &moved, outliers)?
            .reshape(&[])?;
        ood_value = ood.to_scalar_f32()?;
        ood_grad = Some(ood.gradients(&[&leaf])?.remove(0));
    }
    Ok(EmbeddingTerms {
        id_con: id_con.to_scalar_f32()?,
        ood: ood_value,
        id_grad,
        ood_grad,
        moved_prototypes: moved.detach()?,
    })
}

/// The OOD term of `form` for embeddings `z`, the prototypes `moved` by them (with their
/// history) and the outliers.
pub fn ood_term(
    form: OodLossForm,
    tau: f64,
    z: &Tensor,
    moved: &Tensor,
    outliers: &Tensor,
) -> Result<Tensor> {
    match form {
        // Gradient reaches the network through the prototypes moved by this batch, as CIDER's
        // in-loss update; the outliers themselves are detached samples.
        OodLossForm::Uniform => ood_discernment_loss(outliers, moved, tau)?.neg(),
        OodLossForm::AsPrinted => ood_discernment_loss(outliers, moved, tau),
        OodLossForm::Released => released_ood_loss(z, &moved.detach()?, tau),
        OodLossForm::OutlierNegatives => outlier_negative_loss(z, &moved.detach()?, outliers, tau),
    }
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
    let detached = out.embeddings.detach()?;
    buffer.push(&detached.to_vec_f32()?, inputs.host_labels)?;

    let (mut outliers, mut rounds, mut synthesis_ms) = (None, Vec::new(), 0.0);
    if inputs.with_outliers {
        let started = std::time::Instant::now();
        let bank = buffer.bank(params.backend())?;
        let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
        let synthesis =
            config.sampler.synthesize(&input, config.energy.as_ref(), config.barrier.as_ref(), rng)?;
        // Lazy backends would defer the work: the outliers on the host mark the end.
        synthesis.outliers.to_vec_f32()?;
        synthesis_ms = started.elapsed().as_secs_f64() * 1e3;
        rounds = synthesis.rounds;
        if !synthesis.tags.is_empty() {
            outliers = Some(synthesis.outliers);
        }
    }
    let terms = embedding_terms(config, &detached, inputs.labels, &prototypes, outliers.as_ref())?;
    let weight = config.train.ood_weight;
    let mut embedding_grad = terms.id_grad.detach()?;
    let (mut grad_ood, mut ood_grad_share) = (None, None);
    let grad_id_con = frobenius(&terms.id_grad)?;
    if let Some(ood_grad) = &terms.ood_grad {
        let weighted = ood_grad.scale(weight)?;
        let norm = frobenius(&weighted)?;
        grad_ood = Some(norm);
        ood_grad_share = Some(if grad_id_con > 0.0 { norm / grad_id_con } else { f64::INFINITY });
        // Skipped at weight 0, so such a step is the no-outlier step bit for bit.
        if weight != 0.0 {
            embedding_grad = embedding_grad.add(&weighted.detach()?)?;
        }
    }
    let updates = pass.into_updates();
    let ce_value = ce.to_scalar_f32()?;
    let total_value = (f64::from(ce_value) + f64::from(terms.id_con) + weight * f64::from(terms.ood)) as f32;
    if !total_value.is_finite() {
        return Err(Error::Data(format!(
            "the loss went non-finite (cross-entropy {ce_value}, ID contrastive {}, OOD {}); \
             the step was not applied",
            terms.id_con, terms.ood
        )));
    }
    let surrogate = ce.reshape(&[])?.add(&out.embeddings.mul(&embedding_grad)?.sum_all()?.reshape(&[])?)?;
    let grads = {
        let trainable = params.trainable();
        let wrt: Vec<&Tensor> = trainable.iter().map(|(_, t)| *t).collect();
        surrogate.gradients_release(&wrt)?
    };
    sgd.step(params, &grads, inputs.learning_rate)?;
    params.apply_updates(updates)?;
    params.set(DualHeadNet::PROTOTYPES, &terms.moved_prototypes)?;
    let acceptance = (!rounds.is_empty())
        .then(|| rounds.iter().map(|r| r.acceptance_rate).sum::<f64>() / rounds.len() as f64);
    Ok(StepReport {
        learning_rate: inputs.learning_rate,
        ce: ce_value,
        id_con: terms.id_con,
        ood: terms.ood,
        total: total_value,
        grad_id_con,
        grad_ood,
        ood_grad_share,
        outliers: outliers.map_or(0, |o| o.dims()[0]),
        acceptance,
        rounds,
        synthesis_ms,
        ..StepReport::default()
    })
}

/// The Frobenius norm of `t`, on the host in f64.
fn frobenius(t: &Tensor) -> Result<f64> {
    Ok(t.to_vec_f32()?.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt())
}
