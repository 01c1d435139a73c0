//! Spherical Hamiltonian Monte Carlo (Eqn 3, Algorithm 1).

use hamos_api::config::{finite_in, positive};
use hamos_api::{EnergyEval, IdBarrier, OodnessEnergy, Result, Sampler, Synthesis, SynthesisInput, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::mcmc::{ChainState, Kernel, Proposal, Target};
use crate::sphere::{self, HostRows};

/// Spherical HMC: tangent Gaussian momentum, `L` leapfrog steps along great circles, then
/// Metropolis-Hastings on `H = U + |q|^2 / 2` and the ID barrier. Defaults from Table 4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hmc {
    /// Synthesis rounds `R` (Table 4: 5).
    pub rounds: usize,
    /// Leapfrog steps `L` per round (Table 4: 3).
    pub leapfrog_steps: usize,
    /// Step size `epsilon` (Table 4: 0.1).
    pub step_size: f64,
    /// Adjacent classes per class `N_adj` (Table 4: 4).
    pub n_adj: usize,
}

impl Default for Hmc {
    fn default() -> Self {
        Hmc { rounds: 5, leapfrog_steps: 3, step_size: 0.1, n_adj: 4 }
    }
}

hamos_api::register_plugin!(
    Sampler,
    Hmc,
    "hmc",
    "spherical Hamiltonian Monte Carlo, the HamOS default (Eqn 3, Algorithm 1)"
);

/// Integrates `steps` leapfrog steps of size `step_size` on the sphere from `(z, q)` with the
/// energy already evaluated at `z` (Eqn 3). Costs `steps` energy evaluations: each step's
/// end-of-step gradient is the next step's start gradient. The geometry runs on the host in
/// `f64` ([`sphere::leapfrog`]).
pub fn spherical_leapfrog(
    target: &Target<'_>,
    z: &Tensor,
    q: &Tensor,
    eval: &EnergyEval,
    step_size: f64,
    steps: usize,
) -> Result<(Tensor, Tensor, EnergyEval)> {
    let trajectory =
        sphere::leapfrog(target, z, HostRows::download(z)?, HostRows::download(q)?, eval, step_size, steps)?;
    let momenta = trajectory.momenta.upload(z.backend().as_ref())?;
    Ok((trajectory.positions, momenta, trajectory.eval))
}

/// A tangent standard-normal momentum at each row of `z` `[m, d]`, drawn on the host.
fn host_momentum(z: &HostRows, rng: &mut dyn RngCore) -> HostRows {
    let noise = hamos_api::backend::randn_host(z.values.len(), 0.0, 1.0, rng);
    let mut q = HostRows::from_f32(&noise, z.dim);
    sphere::project_tangent(z, &mut q);
    q
}

/// A tangent standard-normal momentum at each row of `z`, drawn on the host.
pub fn tangent_momentum(z: &Tensor, rng: &mut dyn RngCore) -> Result<Tensor> {
    host_momentum(&HostRows::download(z)?, rng).upload(z.backend().as_ref())
}

/// `|q|^2 / 2` per row, `[m]`.
pub fn kinetic(q: &Tensor) -> Result<Tensor> {
    let rows = q.dim("kinetic", 0)?;
    q.sqr()?.sum(1, false)?.scale(0.5)?.reshape(&[rows])
}

/// The HMC transition with explicit step size and steps (shared by HMC and MALA).
#[derive(Debug, Clone, Copy)]
pub struct HmcKernel {
    /// Leapfrog step size.
    pub step_size: f64,
    /// Leapfrog steps.
    pub steps: usize,
}

impl Kernel for HmcKernel {
    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        let z = HostRows::download(&state.positions)?;
        let q = host_momentum(&z, rng);
        let kinetic_old = sphere::kinetic(&q);
        let end = sphere::leapfrog(target, &state.positions, z, q, &state.eval, self.step_size, self.steps)?;
        let kinetic_new = sphere::kinetic(&end.momenta);
        let (energy_old, energy_new) = (state.eval.energy.to_vec_f32()?, end.eval.energy.to_vec_f32()?);
        // H(old) - H(new) in f64: dH is small beside H.
        let log_accept: Vec<f32> = (0..kinetic_old.len())
            .map(|i| {
                let h_old = f64::from(energy_old[i]) + kinetic_old[i];
                let h_new = f64::from(energy_new[i]) + kinetic_new[i];
                (h_old - h_new) as f32
            })
            .collect();
        let log_accept = state.positions.backend().from_f32(&log_accept, &[log_accept.len()])?;
        Ok(Proposal { positions: end.positions, eval: end.eval, log_accept, energy_evaluations: self.steps })
    }
}

/// Checks the fields every MCMC sampler shares.
pub(crate) fn validate_common(rounds: usize, step_size: f64, n_adj: usize) -> Result<()> {
    positive("sampler.rounds", rounds)?;
    positive("sampler.n_adj", n_adj)?;
    finite_in("sampler.step_size", step_size, 0.0, 100.0, false)
}

#[typetag::serde(name = "hmc")]
impl Sampler for Hmc {
    fn validate(&self) -> Result<()> {
        validate_common(self.rounds, self.step_size, self.n_adj)?;
        positive("sampler.leapfrog_steps", self.leapfrog_steps)
    }

    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis> {
        let kernel = HmcKernel { step_size: self.step_size, steps: self.leapfrog_steps };
        crate::synthesize_chains(&kernel, self.n_adj, self.rounds, input, energy, barrier, rng)
    }
}
