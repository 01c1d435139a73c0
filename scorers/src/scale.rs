//! SCALE (Xu et al. 2024): ASH's sharpening without its pruning, scored by the energy.

use hamos_api::{Consumes, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::shaping::{check_percentile, shaped_energy};

/// SCALE on the penultimate features `x` `[w]` of each sample, then the energy score:
/// 1. `s1 = sum_i x_i`;
/// 2. `s2` = the sum of the `k = w - round(w * percentile / 100)` largest activations
///    (`round` half to even, as `np.round` in the reference code);
/// 3. `a = x * exp(s1 / s2)`: every activation is kept, only scaled (unlike [`AshScorer`]);
/// 4. `S(x) = logsumexp(W a + b)` with the classification layer `(W, b)` (temperature 1,
///    higher = more ID).
///
/// Percentile 85 as in Xu et al. and the paper (Appendix E.1). It assumes non-negative
/// (post-ReLU) activations like ASH; a row with `s2 = 0` is left unscaled instead of dividing
/// by zero. Consumes `features` and `head`; needs no fitting.
///
/// [`AshScorer`]: crate::AshScorer
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleScorer {
    /// Percentage of activations left out of `s2`, in `[0, 100)` (85 in the paper).
    pub percentile: f64,
}

impl Default for ScaleScorer {
    fn default() -> Self {
        ScaleScorer { percentile: 85.0 }
    }
}

hamos_api::register_plugin!(
    Scorer,
    ScaleScorer,
    "scale",
    "SCALE: scale the activations by exp(s1/s2) without pruning, energy of the recomputed logits"
);

#[typetag::serde(name = "scale")]
impl Scorer for ScaleScorer {
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
        Ok(Box::new(FittedScale { percentile: self.percentile }))
    }
}

/// [`ScaleScorer`] after fitting (it only keeps the percentile).
#[derive(Debug, Clone, Copy)]
pub struct FittedScale {
    percentile: f64,
}

impl FittedScorer for FittedScale {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        shaped_energy("scale", input, self.percentile, false)
    }
}
