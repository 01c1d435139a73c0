//! Metropolis-adjusted Langevin: spherical HMC with one leapfrog step (Appendix C.3).

use hamos_api::{IdBarrier, OodnessEnergy, Result, Sampler, Synthesis, SynthesisInput};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::hmc::{validate_common, HmcKernel};

/// MALA on the sphere: [`Hmc`](crate::hmc::Hmc) with `L = 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mala {
    /// Synthesis rounds `R` (Table 4: 5).
    pub rounds: usize,
    /// Step size `epsilon` (Table 4: 0.1).
    pub step_size: f64,
    /// Adjacent classes per class `N_adj` (Table 4: 4).
    pub n_adj: usize,
}

impl Default for Mala {
    fn default() -> Self {
        Mala { rounds: 5, step_size: 0.1, n_adj: 4 }
    }
}

hamos_api::register_plugin!(
    Sampler,
    Mala,
    "mala",
    "Metropolis-adjusted Langevin on the sphere (HMC with L = 1)"
);

#[typetag::serde(name = "mala")]
impl Sampler for Mala {
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
        let kernel = HmcKernel { step_size: self.step_size, steps: 1 };
        crate::synthesize_chains(&kernel, self.n_adj, self.rounds, input, energy, barrier, rng)
    }
}
