use std::fmt::Debug;

use crate::error::Result;
use crate::tensor::Tensor;

/// An ID contrastive loss (CIDER, SupCon, SimCLR, ...), written once against [`Tensor`] so that
/// it trains on every backend.
#[typetag::serde(tag = "kind")]
pub trait ContrastiveLoss: Debug + Send + Sync {
    /// Checks the config; called before any run starts.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The loss (shape `[1]`) of one batch.
    fn loss(&self, batch: &ContrastiveBatch) -> Result<Tensor>;
}

/// One batch for a contrastive loss.
#[derive(Debug, Clone)]
pub struct ContrastiveBatch {
    /// Unit-norm embeddings `[b, d]`; with two views, view 2 of row `i` is row `i + b/2`.
    pub embeddings: Tensor,
    /// Class labels `[b]`, `I64`.
    pub labels: Tensor,
    /// Class prototypes `[c, d]` (unit-norm, EMA-updated, no gradient).
    pub prototypes: Tensor,
}
