//! Spherical Hamiltonian Monte Carlo (Eqn 3, Algorithm 1).

use hamos_api::config::positive;
use hamos_api::Result;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::mcmc::{ChainState, Chains, Kernel, Proposal, Target};
use crate::sphere::{self, HostRows};

/// Spherical HMC: tangent Gaussian momentum, `L` leapfrog steps along great circles, then
/// Metropolis-Hastings on `H = U + |q|^2 / 2` and the ID barrier. Defaults from Table 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hmc {
    /// `rounds`, `step_size`, `n_adj`.
    #[serde(flatten)]
    pub chains: Chains,
    /// Leapfrog steps `L` per round (Table 4: 3).
    pub leapfrog_steps: usize,
}

impl Default for Hmc {
    fn default() -> Self {
        Hmc { chains: Chains::default(), leapfrog_steps: 3 }
    }
}

crate::register_kernel!(
    Hmc,
    "hmc",
    "spherical Hamiltonian Monte Carlo, the HamOS default (Eqn 3, Algorithm 1)"
);

impl Kernel for Hmc {
    fn chains(&self) -> &Chains {
        &self.chains
    }

    fn validate(&self) -> Result<()> {
        positive("sampler.leapfrog_steps", self.leapfrog_steps)
    }

    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        hamiltonian(target, state, self.chains.step_size, self.leapfrog_steps, rng)
    }
}

/// The HMC transition of [`Hmc`] and [`Mala`](crate::mala::Mala): momentum `q = P_z xi`,
/// `xi` from [`sphere::standard_normal`], `steps` leapfrog steps, and
/// `log alpha = H(z, q) - H(z', q')` with `H = U + |q|^2 / 2`, in `f64`.
pub fn hamiltonian(
    target: &Target<'_>,
    state: &ChainState,
    step_size: f64,
    steps: usize,
    rng: &mut dyn RngCore,
) -> Result<Proposal> {
    let z = HostRows::download(&state.positions)?;
    let q = sphere::tangent_normal(&z, rng);
    let kinetic_old = sphere::kinetic(&q);
    let end = sphere::leapfrog(target, &state.positions, z, q, &state.eval, step_size, steps)?;
    let kinetic_new = sphere::kinetic(&end.momenta);
    let (energy_old, energy_new) = (sphere::energies(&state.eval)?, sphere::energies(&end.eval)?);
    let log_accept = (0..kinetic_old.len())
        .map(|i| (energy_old[i] + kinetic_old[i]) - (energy_new[i] + kinetic_new[i]))
        .collect();
    Ok(Proposal { positions: end.positions, eval: end.eval, log_accept, energy_evaluations: steps })
}
