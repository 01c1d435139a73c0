//! The energy score (Liu et al. 2020, EBO, Eqn 17), negated so that higher means more ID.

use hamos_api::config::finite_in;
use hamos_api::{Consumes, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::logits_of;

/// `S(x) = T * log sum_c exp(F(x)_c / T)`, the negative free energy of the logits: Eqn 17 of the
/// paper is the energy `-T log sum exp(F / T)` (higher = more OOD); this is its negation so that,
/// like every scorer here, higher means more ID. Errors (not panics) when the input has no logits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnergyScorer {
    /// Temperature `T` (1 in the paper, Appendix E.1).
    pub temperature: f64,
}

impl Default for EnergyScorer {
    fn default() -> Self {
        EnergyScorer { temperature: 1.0 }
    }
}

hamos_api::register_plugin!(
    Scorer,
    EnergyScorer,
    "energy",
    "negative energy T * logsumexp(logits / T) of the classifier logits (Eqn 17)"
);

#[typetag::serde(name = "energy")]
impl Scorer for EnergyScorer {
    fn validate(&self) -> Result<()> {
        finite_in("scorer.temperature", self.temperature, 0.0, f64::INFINITY, false)
    }

    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Logits]
    }

    fn fitted(&self) -> bool {
        false
    }

    fn fit(&self, _train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        self.validate()?;
        Ok(Box::new(FittedEnergy { temperature: self.temperature }))
    }
}

/// [`EnergyScorer`] after fitting (it only keeps the temperature).
#[derive(Debug, Clone, Copy)]
pub struct FittedEnergy {
    temperature: f64,
}

impl FittedScorer for FittedEnergy {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        let t = self.temperature;
        logits_of("energy", input)?.detach()?.scale(1.0 / t)?.logsumexp(1, false)?.scale(t)
    }
}
