//! Metropolis-adjusted Langevin: spherical HMC with one leapfrog step (Appendix C.3).

use hamos_api::Result;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::mcmc::{ChainState, Chains, Kernel, Proposal, Target};

/// MALA on the sphere: [`Hmc`](crate::hmc::Hmc) with `L = 1`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mala {
    /// `rounds`, `step_size`, `n_adj`.
    #[serde(flatten)]
    pub chains: Chains,
}

crate::register_kernel!(Mala, "mala", "Metropolis-adjusted Langevin on the sphere (HMC with L = 1)");

impl Kernel for Mala {
    fn chains(&self) -> &Chains {
        &self.chains
    }

    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        crate::hmc::hamiltonian(target, state, self.chains.step_size, 1, rng)
    }
}
