//! One supervised training step, shared by the CE pretraining, the benchmark and the tests.

use hamos_api::{Forward, ParamStore, Result, Tensor};

use crate::loss::cross_entropy;
use crate::network::Classifier;
use crate::optim::Sgd;

/// Forward in training mode, mean cross-entropy, one backward pass for every trainable
/// parameter, the SGD step at `lr`, then the batch-norm buffer updates. Returns the loss before
/// the step (copied to the host: one scalar per step).
pub fn cross_entropy_step(
    net: &Classifier,
    params: &mut ParamStore,
    sgd: &mut Sgd,
    images: &Tensor,
    labels: &Tensor,
    lr: f64,
) -> Result<f32> {
    let pass = Forward::train(params);
    let loss = cross_entropy(&net.logits(&pass, images)?, labels)?;
    let updates = pass.into_updates();
    let grads = {
        let trainable = params.trainable();
        let wrt: Vec<&Tensor> = trainable.iter().map(|(_, t)| *t).collect();
        // The loss is differentiated once: backends may free its graph on the way.
        loss.gradients_release(&wrt)?
    };
    let value = loss.to_scalar_f32()?;
    if !value.is_finite() {
        return Err(hamos_api::Error::Data(format!("cross-entropy is {value}; the step was not applied")));
    }
    sgd.step(params, &grads, lr)?;
    params.apply_updates(updates)?;
    Ok(value)
}
