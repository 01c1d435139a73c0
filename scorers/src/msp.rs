//! Maximum softmax probability (Hendrycks & Gimpel 2017, Eqn 15).

use hamos_api::{Consumes, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::logits_of;

/// `S(x) = max_c softmax(F(x))_c` from the classifier logits; it has no settings and needs no
/// fitting. Errors (not panics) when the input has no logits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MspScorer {}

hamos_api::register_plugin!(
    Scorer,
    MspScorer,
    "msp",
    "maximum softmax probability of the classifier logits (Eqn 15)"
);

#[typetag::serde(name = "msp")]
impl Scorer for MspScorer {
    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Logits]
    }

    fn fitted(&self) -> bool {
        false
    }

    fn fit(&self, _train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        Ok(Box::new(FittedMsp))
    }
}

/// [`MspScorer`] after fitting (nothing to store).
#[derive(Debug, Clone, Copy)]
pub struct FittedMsp;

impl FittedScorer for FittedMsp {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        logits_of("msp", input)?.detach()?.softmax(1)?.max(1, false)
    }
}
