//! Plain gradient descent on the CIDER loss of a free `[8, 4]` embedding matrix.

mod common;

use common::*;
use hamos_api::{ContrastiveBatch, ContrastiveLoss, Result, Tensor};
use hamos_losses::cider::update_prototypes;
use hamos_losses::Cider;

#[test]
fn gradient_descent_on_cider_decreases_the_loss() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(21);
    let backend = backend();
    let labels = label_tensor(&backend, &[0, 1, 2, 3, 0, 1, 2, 3])?;
    let mut x = backend.variable(&tensor(&backend, &unit_rows(&mut rng, 8, 4))?)?;
    // Prototypes start as the normalized class means, as HamOS initializes them.
    let z0 = x.l2_normalize(1)?;
    let mut prototypes = z0.narrow(0, 0, 4)?.add(&z0.narrow(0, 4, 4)?)?.l2_normalize(1)?.detach()?;
    let cider = Cider::default();
    let (lr, steps) = (0.05, 150);
    let mut history = Vec::with_capacity(steps);
    for _ in 0..steps {
        let z = x.l2_normalize(1)?;
        let batch = ContrastiveBatch {
            embeddings: z.clone(),
            labels: labels.clone(),
            prototypes: prototypes.clone(),
        };
        let loss: Tensor = cider.loss(&batch)?;
        history.push(loss.to_scalar_f32()?);
        let grad = &loss.gradients(&[&x])?[0];
        x = backend.variable(&x.sub(&grad.scale(lr)?)?.detach()?)?;
        prototypes = update_prototypes(&prototypes, &z.detach()?, &labels, cider.prototype_momentum)?;
    }
    let (first, last) = (history[0], history[steps - 1]);
    assert!(history.iter().all(|v| v.is_finite()), "{history:?}");
    assert!(last < first - 0.1, "loss went from {first} to {last}: {history:?}");
    Ok(())
}
