//! ASH-S, activation shaping with sharpening (Djurisic et al. 2023), scored by the energy.

use hamos_api::{Consumes, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::shaping::{check_percentile, shaped_energy};

/// ASH-S on the penultimate features `x` `[w]` of each sample, then the energy score:
/// 1. `s1 = sum_i x_i`;
/// 2. keep the `k = w - round(w * percentile / 100)` largest activations and zero the rest
///    (`round` half to even, as `np.round` in the reference code);
/// 3. `s2` = the sum of the kept activations; `a = x_kept * exp(s1 / s2)`;
/// 4. `S(x) = logsumexp(W a + b)` with the classification layer `(W, b)` (temperature 1,
///    higher = more ID).
///
/// Percentile 65 as in Djurisic et al. and the paper (Appendix E.1). ASH assumes non-negative
/// (post-ReLU) activations, as a ResNet's pooled penultimate features are; other inputs are
/// computed by the same formula. A row with `s2 = 0` is left unscaled instead of dividing by
/// zero. Consumes `features` and `head`; needs no fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AshScorer {
    /// Percentage of activations pruned, in `[0, 100)` (65 in the paper).
    pub percentile: f64,
}

impl Default for AshScorer {
    fn default() -> Self {
        AshScorer { percentile: 65.0 }
    }
}

hamos_api::register_plugin!(
    Scorer,
    AshScorer,
    "ash",
    "ASH-S: prune all but the top activations, sharpen by exp(s1/s2), energy of the recomputed logits"
);

#[typetag::serde(name = "ash")]
impl Scorer for AshScorer {
    fn validate(&self) -> Result<()> {
        check_percentile(self.percentile)
    }

    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Features, Consumes::Head]
    }

    fn fitted(&self) -> bool {
        false
    }

    fn fit(&self, _train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        self.validate()?;
        Ok(Box::new(FittedAsh { percentile: self.percentile }))
    }
}

/// [`AshScorer`] after fitting (it only keeps the percentile).
#[derive(Debug, Clone, Copy)]
pub struct FittedAsh {
    percentile: f64,
}

impl FittedScorer for FittedAsh {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        shaped_energy("ash", input, self.percentile, true)
    }
}
