//! The "cross-entropy only" baseline of Table 12: no contrastive term at all.

use hamos_api::{ContrastiveBatch, ContrastiveLoss, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::{embedding_dims, zero_loss};

/// A contrastive loss that is always zero, so that training uses only the cross-entropy of the
/// classification head (and, with HamOS, the OOD-discernment loss).
///
/// The zero is computed from the embeddings (`0 * sum(z)`), so it is a `[1]` tensor on the
/// batch's backend and device that any total loss can add and differentiate (its gradient is
/// zero). It has no settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CeOnly {}

hamos_api::register_plugin!(
    Loss,
    CeOnly,
    "ce_only",
    "no contrastive loss (zero): the cross-entropy-only baseline of Table 12"
);

#[typetag::serde(name = "ce_only")]
impl ContrastiveLoss for CeOnly {
    fn loss(&self, batch: &ContrastiveBatch) -> Result<Tensor> {
        embedding_dims("ce_only", &batch.embeddings)?;
        zero_loss(&batch.embeddings)
    }
}
