//! SupCon (Khosla et al. 2020), the supervised contrastive loss of the paper's Table 12.

use hamos_api::config::finite_in;
use hamos_api::{ContrastiveBatch, ContrastiveLoss, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::{embedding_dims, labels_for, masked_logsumexp_rows, off_diagonal};

/// The supervised contrastive loss (`L^sup_out` of Khosla et al. 2020, "all" anchors) over every
/// pair of rows of the batch, both views included:
///
/// ```text
/// L = -(tau / tau_base) * (1/|A|) sum_{i in A} (1/|P(i)|) sum_{p in P(i)}
///       log( exp(z_i . z_p / tau) / sum_{a != i} exp(z_i . z_a / tau) )
/// ```
///
/// with `P(i)` the other rows with the label of row `i` (the second view of `i` among them) and
/// `A` the anchors with a non-empty `P(i)`: anchors without a positive are skipped rather than
/// giving NaN, and a batch with no positive pair at all gives a zero loss (still differentiable,
/// with zero gradient). Prototypes are not used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupCon {
    /// Temperature `tau` (0.1, the value Khosla et al. found best).
    pub temperature: f64,
    /// Base temperature `tau_base`; the loss is scaled by `tau / tau_base` (1 by default).
    pub base_temperature: f64,
}

impl Default for SupCon {
    fn default() -> Self {
        SupCon { temperature: 0.1, base_temperature: 0.1 }
    }
}

hamos_api::register_plugin!(
    Loss,
    SupCon,
    "supcon",
    "SupCon: supervised contrastive loss over all pairs of the batch (Khosla et al. 2020)"
);

#[typetag::serde(name = "supcon")]
impl ContrastiveLoss for SupCon {
    fn validate(&self) -> Result<()> {
        finite_in("loss.temperature", self.temperature, 0.0, f64::INFINITY, false)?;
        finite_in("loss.base_temperature", self.base_temperature, 0.0, f64::INFINITY, false)
    }

    fn loss(&self, batch: &ContrastiveBatch) -> Result<Tensor> {
        self.validate()?;
        let z = &batch.embeddings;
        let (b, _) = embedding_dims("supcon", z)?;
        let labels = labels_for("supcon", &batch.labels, b)?;
        let others = off_diagonal(z, b)?;
        let positives = labels.reshape(&[b, 1])?.eq(&labels.reshape(&[1, b])?)?.mul(&others)?;

        let logits = z.matmul(&z.t()?)?.scale(1.0 / self.temperature)?;
        let log_prob = logits.sub(&masked_logsumexp_rows(&logits, &others)?)?;
        let count = positives.sum(1, true)?;
        let per_anchor = positives.mul(&log_prob)?.sum(1, true)?.div(&count.clamp(1.0, f64::INFINITY)?)?;
        // Anchors without positives contribute 0 to the sum and are left out of the count.
        let anchors = count.gt(&count.scalar_like(0.0)?)?.sum_all()?.clamp(1.0, f64::INFINITY)?;
        per_anchor.sum_all()?.div(&anchors)?.scale(-self.temperature / self.base_temperature)
    }
}
