//! # An example HamOS plugin crate
//!
//! Defines the MCMC sampler `midpoint_jitter` in a crate of its own: a config struct that
//! flattens the shared [`Chains`] fields, its [`Kernel`] (the proposal and its
//! Metropolis-Hastings log ratio) and one [`register_kernel!`](hamos_samplers::register_kernel)
//! line. The round loop of the built-in samplers runs it: chain starts, the ID barrier,
//! non-finite chains and per-round diagnostics come for free. A binary that links this crate
//! (`use hamos_example_plugin as _;`) selects it with `[sampler] kind = "midpoint_jitter"`.
//!
//! The kernel jitters each chain along a great circle by a tangent Gaussian step and accepts
//! every finite proposal (`log alpha = 0`, no target density), so only the barrier filters: a
//! simple baseline. A correct sampler returns `log pi(z') q(z | z') - log pi(z) q(z' | z)`.
//!
//! ```
//! use hamos_api::Sampler;
//! use hamos_example_plugin as _; // links the registration
//! let sampler: Box<dyn Sampler> = toml::from_str("kind = \"midpoint_jitter\"\nstep_size = 0.2")
//! #   .map_err(|e| hamos_api::Error::Config(e.to_string()))?;
//! sampler.validate()?;
//! # Ok::<(), hamos_api::Error>(())
//! ```

use hamos_api::Result;
use hamos_samplers::mcmc::{ChainState, Chains, Kernel, Proposal, Target};
use hamos_samplers::sphere::{self, HostRows};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// A tangent Gaussian step from each chain's current position every round (chains start at
/// the class midpoints), every finite proposal accepted, barrier-filtered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MidpointJitter {
    /// `rounds`, `step_size` (standard deviation of each tangent step, radians), `n_adj`.
    #[serde(flatten)]
    pub chains: Chains,
}

hamos_samplers::register_kernel!(
    MidpointJitter,
    "midpoint_jitter",
    "example plugin crate: accept-everything tangent Gaussian walk from the class midpoints, barrier-filtered"
);

impl Kernel for MidpointJitter {
    fn chains(&self) -> &Chains {
        &self.chains
    }

    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        let mut z = HostRows::download(&state.positions)?;
        let mut step = sphere::tangent_normal(&z, rng);
        sphere::geodesic_flow(&mut z, &mut step, self.chains.step_size);
        let positions = z.upload(state.positions.backend().as_ref())?;
        let eval = target.eval(&positions)?;
        Ok(Proposal { positions, eval, log_accept: vec![0.0; z.rows()], energy_evaluations: 1 })
    }
}
