//! Random-walk Metropolis-Hastings on the sphere, the baseline of Table 9.

use hamos_api::Result;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::mcmc::{ChainState, Chains, Kernel, Proposal, Target};
use crate::sphere::{self, HostRows};

/// Proposes `exp_z(step_size * xi)` with `xi` a tangent standard normal: the proposal density
/// depends only on the geodesic distance, so it is symmetric and `log alpha = U(z) - U(z')`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomWalk {
    /// `rounds`, `step_size` (the scale of the tangent Gaussian step), `n_adj`.
    #[serde(flatten)]
    pub chains: Chains,
}

crate::register_kernel!(
    RandomWalk,
    "random_walk",
    "random-walk Metropolis-Hastings with tangent Gaussian steps (Table 9 baseline)"
);

impl Kernel for RandomWalk {
    fn chains(&self) -> &Chains {
        &self.chains
    }

    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        let mut z = HostRows::download(&state.positions)?;
        let mut step = sphere::tangent_normal(&z, rng);
        sphere::geodesic_flow(&mut z, &mut step, self.chains.step_size);
        let positions = z.upload(state.positions.backend().as_ref())?;
        let eval = target.eval(&positions)?;
        let (old, new) = (sphere::energies(&state.eval)?, sphere::energies(&eval)?);
        let log_accept = old.iter().zip(&new).map(|(u, v)| u - v).collect();
        Ok(Proposal { positions, eval, log_accept, energy_evaluations: 1 })
    }
}
