//! The simplified Riemannian samplers of Appendix C.3: `rmhmc` and `mmala` (RMHMC with one step).
//!
//! What is implemented, exactly (the paper gives only Eqn 13):
//! - Metric: per chain, a diagonal momentum covariance `D = lambda + (1 - lambda) v / mean(v)`,
//!   `v` the per-coordinate variance of the chain's last `J` positions *before* the current one
//!   (`J = history`, default 2), `lambda = shrinkage`. Until `J` such positions exist, `D = I`.
//!   Excluding the current position keeps `D` independent of the state being moved, so each
//!   transition leaves the target invariant.
//! - Momentum: `q = P_z D^(1/2) xi`, `xi ~ N(0, I)`: a Gaussian on the tangent space with
//!   covariance `C = P D P`, whose density has `C^+ = W = D^-1 - D^-1 z z' D^-1 / (z' D^-1 z)`
//!   and pseudo-determinant `det(D) z' D^-1 z`.
//! - Dynamics: the spherical leapfrog of HMC (volume-preserving and reversible), so the exact
//!   MH ratio uses `H(z, q) = U(z) + q' W_z q / 2 + log(z' D^-1 z) / 2`.
//!
//! All of it runs on the host in `f64` ([`crate::sphere`]).

use hamos_api::config::{finite_in, positive};
use hamos_api::Result;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::mcmc::{ChainState, Chains, Kernel, Proposal, Target};
use crate::sphere::{self, dot, HostRows};

/// Riemannian-manifold HMC, simplified as described in the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rmhmc {
    /// `rounds`, `step_size`, `n_adj`.
    #[serde(flatten)]
    pub chains: Chains,
    /// Leapfrog steps `L` (Table 4: 3).
    pub leapfrog_steps: usize,
    /// Earlier states `J` the metric is estimated from (Appendix C.3: 2).
    pub history: usize,
    /// Weight `lambda` of the identity in the metric, in `[0, 1]`.
    pub shrinkage: f64,
}

impl Default for Rmhmc {
    fn default() -> Self {
        Rmhmc { chains: Chains::default(), leapfrog_steps: 3, history: 2, shrinkage: 0.8 }
    }
}

/// Manifold MALA: [`Rmhmc`] with one leapfrog step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mmala {
    /// `rounds`, `step_size`, `n_adj`.
    #[serde(flatten)]
    pub chains: Chains,
    /// Earlier states `J` the metric is estimated from (Appendix C.3: 2).
    pub history: usize,
    /// Weight `lambda` of the identity in the metric, in `[0, 1]`.
    pub shrinkage: f64,
}

impl Default for Mmala {
    fn default() -> Self {
        Mmala { chains: Chains::default(), history: 2, shrinkage: 0.8 }
    }
}

crate::register_kernel!(
    Rmhmc,
    "rmhmc",
    "simplified Riemannian HMC: momentum covariance from the last J states (Eqn 13)"
);
crate::register_kernel!(Mmala, "mmala", "manifold MALA: the simplified RMHMC with one leapfrog step");

impl Kernel for Rmhmc {
    fn chains(&self) -> &Chains {
        &self.chains
    }

    fn validate(&self) -> Result<()> {
        positive("sampler.leapfrog_steps", self.leapfrog_steps)?;
        self.metric().validate()
    }

    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        self.metric().propose(target, state, self.chains.step_size, self.leapfrog_steps, rng)
    }
}

impl Rmhmc {
    fn metric(&self) -> Metric {
        Metric { history: self.history, shrinkage: self.shrinkage }
    }
}

impl Kernel for Mmala {
    fn chains(&self) -> &Chains {
        &self.chains
    }

    fn validate(&self) -> Result<()> {
        self.metric().validate()
    }

    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        self.metric().propose(target, state, self.chains.step_size, 1, rng)
    }
}

impl Mmala {
    fn metric(&self) -> Metric {
        Metric { history: self.history, shrinkage: self.shrinkage }
    }
}

/// The adaptive diagonal metric shared by `rmhmc` and `mmala`, and their transition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// `J`.
    pub history: usize,
    /// `lambda`.
    pub shrinkage: f64,
}

impl Metric {
    fn validate(&self) -> Result<()> {
        positive("sampler.history", self.history)?;
        finite_in("sampler.shrinkage", self.shrinkage, 0.0, 1.0, true)
    }

    /// The diagonal metric `D` `[m, d]` from the last `J` earlier positions, or ones.
    pub fn diagonal(&self, state: &ChainState) -> Result<HostRows> {
        let z = &state.positions;
        let (rows, dim) = (z.dim("metric", 0)?, z.dim("metric", 1)?);
        let past = &state.history[state.history.len().saturating_sub(self.history)..];
        if self.history < 2 || past.len() < self.history {
            return Ok(HostRows { values: vec![1.0; rows * dim], dim });
        }
        let past: Vec<HostRows> = past.iter().map(HostRows::download).collect::<Result<_>>()?;
        let count = past.len() as f64;
        let mut values = vec![0.0; rows * dim];
        for (row, out) in values.chunks_exact_mut(dim).enumerate() {
            let at = |p: &HostRows, j: usize| p.values[row * dim + j];
            for (j, v) in out.iter_mut().enumerate() {
                let mean = past.iter().map(|p| at(p, j)).sum::<f64>() / count;
                *v = past.iter().map(|p| (at(p, j) - mean).powi(2)).sum::<f64>() / count + 1e-12;
            }
            let mean = out.iter().sum::<f64>() / dim as f64;
            out.iter_mut().for_each(|v| *v = self.shrinkage + (1.0 - self.shrinkage) * *v / mean);
        }
        Ok(HostRows { values, dim })
    }

    /// Momentum `q = P_z D^(1/2) xi` (`xi` from [`sphere::standard_normal`]), `steps` spherical
    /// leapfrog steps, and `log alpha = H(z, q) - H(z', q')` with the `H` of the module docs.
    pub fn propose(
        &self,
        target: &Target<'_>,
        state: &ChainState,
        step_size: f64,
        steps: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Proposal> {
        let z = HostRows::download(&state.positions)?;
        let metric = self.diagonal(state)?;
        let mut q = sphere::standard_normal(z.rows(), z.dim, rng);
        q.values.iter_mut().zip(&metric.values).for_each(|(x, d)| *x *= d.sqrt());
        sphere::project_tangent(&z, &mut q);
        let inverse: Vec<f64> = metric.values.iter().map(|d| 1.0 / d).collect();
        let kinetic_old = kinetic(&z, &q, &inverse);
        let end = sphere::leapfrog(target, &state.positions, z, q, &state.eval, step_size, steps)?;
        let kinetic_new = kinetic(&end.z, &end.momenta, &inverse);
        let (energy_old, energy_new) = (sphere::energies(&state.eval)?, sphere::energies(&end.eval)?);
        let log_accept = (0..kinetic_old.len())
            .map(|i| (energy_old[i] + kinetic_old[i]) - (energy_new[i] + kinetic_new[i]))
            .collect();
        Ok(Proposal { positions: end.positions, eval: end.eval, log_accept, energy_evaluations: steps })
    }
}

/// `q' W_z q / 2 + log(z' D^-1 z) / 2` per row, `inverse` = `D^-1` `[m * d]`.
fn kinetic(z: &HostRows, q: &HostRows, inverse: &[f64]) -> Vec<f64> {
    let dim = z.dim.max(1);
    z.values
        .chunks_exact(dim)
        .zip(q.values.chunks_exact(dim))
        .zip(inverse.chunks_exact(dim))
        .map(|((z, q), w)| {
            let wz: Vec<f64> = z.iter().zip(w).map(|(a, b)| a * b).collect();
            let wq: Vec<f64> = q.iter().zip(w).map(|(a, b)| a * b).collect();
            let (zdz, zdq, qdq) = (dot(z, &wz), dot(&wz, q), dot(q, &wq));
            0.5 * (qdq - zdq * zdq / zdz) + 0.5 * zdz.ln()
        })
        .collect()
}
