//! The maximum logit (Hendrycks et al. 2022, "Scaling out-of-distribution detection for
//! real-world settings").

use hamos_api::{Consumes, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::logits_of;

/// `S(x) = max_c F(x)_c`, the largest classifier logit (unnormalized, unlike [`MspScorer`]);
/// it has no settings and needs no fitting. Errors (not panics) when the input has no logits.
///
/// [`MspScorer`]: crate::MspScorer
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxLogitScorer {}

hamos_api::register_plugin!(
    Scorer,
    MaxLogitScorer,
    "maxlogit",
    "maximum classifier logit (Hendrycks et al. 2022)"
);

#[typetag::serde(name = "maxlogit")]
impl Scorer for MaxLogitScorer {
    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Logits]
    }

    fn fitted(&self) -> bool {
        false
    }

    fn fit(&self, _train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        Ok(Box::new(FittedMaxLogit))
    }
}

/// [`MaxLogitScorer`] after fitting (nothing to store).
#[derive(Debug, Clone, Copy)]
pub struct FittedMaxLogit;

impl FittedScorer for FittedMaxLogit {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        logits_of("maxlogit", input)?.detach()?.max(1, false)
    }
}
