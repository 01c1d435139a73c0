//! Random-walk Metropolis-Hastings on the sphere, the baseline of Table 9.

use hamos_api::{IdBarrier, OodnessEnergy, Result, Sampler, Synthesis, SynthesisInput};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::chains::geodesic_flow;
use crate::hmc::{tangent_momentum, validate_common};
use crate::mcmc::{ChainState, Kernel, Proposal, Target};

/// Proposes `exp_z(step_size * xi)` with `xi` a tangent standard normal: the proposal density
/// depends only on the geodesic distance, so it is symmetric and `log alpha = U(z) - U(z')`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomWalk {
    /// Synthesis rounds `R` (Table 4: 5).
    pub rounds: usize,
    /// Scale of the tangent Gaussian step (the `epsilon` of Table 4: 0.1).
    pub step_size: f64,
    /// Adjacent classes per class `N_adj` (Table 4: 4).
    pub n_adj: usize,
}

impl Default for RandomWalk {
    fn default() -> Self {
        RandomWalk { rounds: 5, step_size: 0.1, n_adj: 4 }
    }
}

hamos_api::register_plugin!(
    Sampler,
    RandomWalk,
    "random_walk",
    "random-walk Metropolis-Hastings with tangent Gaussian steps (Table 9 baseline)"
);

/// The random-walk transition.
#[derive(Debug, Clone, Copy)]
pub struct RandomWalkKernel {
    /// Step scale.
    pub step_size: f64,
}

impl Kernel for RandomWalkKernel {
    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        let xi = tangent_momentum(&state.positions, rng)?;
        let (positions, _) = geodesic_flow(&state.positions, &xi, self.step_size)?;
        let eval = target.eval(&positions)?;
        let log_accept = state.eval.energy.sub(&eval.energy)?;
        Ok(Proposal { positions, eval, log_accept, energy_evaluations: 1 })
    }
}

#[typetag::serde(name = "random_walk")]
impl Sampler for RandomWalk {
    fn validate(&self) -> Result<()> {
        validate_common(self.rounds, self.step_size, self.n_adj)
    }

    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis> {
        let kernel = RandomWalkKernel { step_size: self.step_size };
        crate::synthesize_chains(&kernel, self.n_adj, self.rounds, input, energy, barrier, rng)
    }
}
