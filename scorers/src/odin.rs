//! ODIN (Liang et al. 2018): temperature scaling and input perturbation, then the maximum
//! softmax probability of the perturbed input.

use hamos_api::config::finite_in;
use hamos_api::{Consumes, Error, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

/// `S(x) = max_c softmax(F(x~) / T)_c` with `x~ = x - epsilon * sign(grad_x CE(F(x) / T, y^))`,
/// `y^` the predicted class: a step that raises the tempered confidence, which moves ID inputs
/// more than OOD ones. `epsilon` is in pixel units (images in `[0, 1]`; the model normalizes),
/// like the paper's and OpenOOD's (which divides the step by the normalization std for the same
/// effect). Needs the images and the model ([`Consumes::InputGradients`]); no fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OdinScorer {
    /// Temperature `T` (1000, as ODIN and OpenOOD).
    pub temperature: f64,
    /// Perturbation size in pixel units (0.0014, OpenOOD's default).
    pub epsilon: f64,
}

impl Default for OdinScorer {
    fn default() -> Self {
        OdinScorer { temperature: 1000.0, epsilon: 0.0014 }
    }
}

hamos_api::register_plugin!(
    Scorer,
    OdinScorer,
    "odin",
    "ODIN: max softmax at temperature T of the input perturbed against its cross-entropy"
);

#[typetag::serde(name = "odin")]
impl Scorer for OdinScorer {
    fn validate(&self) -> Result<()> {
        finite_in("scorer.temperature", self.temperature, 0.0, f64::INFINITY, false)?;
        finite_in("scorer.epsilon", self.epsilon, 0.0, 1.0, true)
    }

    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::InputGradients]
    }

    fn fitted(&self) -> bool {
        false
    }

    fn fit(&self, _train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        self.validate()?;
        Ok(Box::new(self.clone()))
    }
}

impl FittedScorer for OdinScorer {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        input.require("odin", &[Consumes::InputGradients])?;
        let inputs = input.inputs.as_ref().ok_or_else(|| Error::Data("odin: no input images".into()))?;
        let images = inputs.images.detach()?;
        if images.rank() != 4 || images.elem_count() == 0 {
            return Err(Error::shape(
                "odin",
                format!("images must be a non-empty [m, c, h, w] tensor, got {:?}", images.dims()),
            ));
        }
        let inv_t = 1.0 / self.temperature;
        let leaf = images.backend().variable(&images)?;
        let tempered = inputs.model.logits(&leaf)?.scale(inv_t)?;
        let m = tempered.dim("odin", 0)?;
        if m != images.dims()[0] {
            return Err(Error::shape(
                "odin",
                format!("the model gave {m} rows of logits for {} images", images.dims()[0]),
            ));
        }
        let predicted = tempered.argmax(1, true)?;
        let cross_entropy = tempered.log_softmax(1)?.gather(1, &predicted)?.sum_all()?.neg()?;
        let grad = cross_entropy
            .gradients(&[&leaf])?
            .pop()
            .ok_or_else(|| Error::Data("odin: no input gradient".into()))?;
        // sign(g) as +-1 (a zero gradient counts as +1, as OpenOOD's `ge(0)`).
        let sign = grad.ge(&grad.scalar_like(0.0)?)?.affine(2.0, -1.0)?;
        let perturbed = images.sub(&sign.scale(self.epsilon)?)?;
        let logits = inputs.model.logits(&perturbed)?.detach()?;
        logits.scale(inv_t)?.softmax(1)?.max(1, false)
    }
}
