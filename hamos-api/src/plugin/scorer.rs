use std::fmt::Debug;

use crate::error::Result;
use crate::tensor::Tensor;

/// An inference-time OOD score (Section 3.4): fitted on ID training embeddings, then scores
/// test inputs. Higher means more in-distribution.
#[typetag::serde(tag = "kind")]
pub trait Scorer: Debug + Send + Sync {
    /// Checks the config; called before any run starts.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Fits on ID training data.
    fn fit(&self, train: &ScoreInput) -> Result<Box<dyn FittedScorer>>;
}

/// A scorer after [`Scorer::fit`].
pub trait FittedScorer: Send {
    /// ID-ness scores `[m]` (higher = more ID).
    fn score(&self, input: &ScoreInput) -> Result<Tensor>;
}

/// What a scorer sees of a batch.
#[derive(Debug, Clone)]
pub struct ScoreInput {
    /// Unit-norm embeddings `[m, d]`.
    pub embeddings: Tensor,
    /// Classifier logits `[m, c]`, when the model has a classification head.
    pub logits: Option<Tensor>,
    /// Labels `[m]` (`I64`), known for training data only.
    pub labels: Option<Tensor>,
}
