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

use hamos_api::config::{finite_in, positive};
use hamos_api::{IdBarrier, OodnessEnergy, Result, Sampler, Synthesis, SynthesisInput, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::chains::project_tangent;
use crate::hmc::{spherical_leapfrog, validate_common};
use crate::mcmc::{ChainState, Kernel, Proposal, Target};

/// Riemannian-manifold HMC, simplified as described in the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rmhmc {
    /// Synthesis rounds `R` (Table 4: 5).
    pub rounds: usize,
    /// Leapfrog steps `L` (Table 4: 3).
    pub leapfrog_steps: usize,
    /// Step size `epsilon` (Table 4: 0.1).
    pub step_size: f64,
    /// Adjacent classes per class `N_adj` (Table 4: 4).
    pub n_adj: usize,
    /// Earlier states `J` the metric is estimated from (Appendix C.3: 2).
    pub history: usize,
    /// Weight `lambda` of the identity in the metric, in `[0, 1]`.
    pub shrinkage: f64,
}

impl Default for Rmhmc {
    fn default() -> Self {
        Rmhmc { rounds: 5, leapfrog_steps: 3, step_size: 0.1, n_adj: 4, history: 2, shrinkage: 0.8 }
    }
}

/// Manifold MALA: [`Rmhmc`] with one leapfrog step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mmala {
    /// Synthesis rounds `R` (Table 4: 5).
    pub rounds: usize,
    /// Step size `epsilon` (Table 4: 0.1).
    pub step_size: f64,
    /// Adjacent classes per class `N_adj` (Table 4: 4).
    pub n_adj: usize,
    /// Earlier states `J` the metric is estimated from (Appendix C.3: 2).
    pub history: usize,
    /// Weight `lambda` of the identity in the metric, in `[0, 1]`.
    pub shrinkage: f64,
}

impl Default for Mmala {
    fn default() -> Self {
        Mmala { rounds: 5, step_size: 0.1, n_adj: 4, history: 2, shrinkage: 0.8 }
    }
}

hamos_api::register_plugin!(
    Sampler,
    Rmhmc,
    "rmhmc",
    "simplified Riemannian HMC: momentum covariance from the last J states (Eqn 13)"
);
hamos_api::register_plugin!(
    Sampler,
    Mmala,
    "mmala",
    "manifold MALA: the simplified RMHMC with one leapfrog step"
);

/// The preconditioned transition shared by `rmhmc` and `mmala`.
#[derive(Debug, Clone, Copy)]
pub struct MetricKernel {
    /// Leapfrog step size.
    pub step_size: f64,
    /// Leapfrog steps.
    pub steps: usize,
    /// `J`.
    pub history: usize,
    /// `lambda`.
    pub shrinkage: f64,
}

impl MetricKernel {
    /// The diagonal metric `D` `[m, d]` from the last `J` earlier positions, or ones.
    pub fn metric(&self, state: &ChainState) -> Result<Tensor> {
        let past = &state.history[state.history.len().saturating_sub(self.history)..];
        if self.history < 2 || past.len() < self.history {
            return state.positions.full_like(1.0);
        }
        let count = past.len() as f64;
        let mut sum = past[0].clone();
        for p in &past[1..] {
            sum = sum.add(p)?;
        }
        let mean = sum.scale(1.0 / count)?;
        let mut sq = past[0].sub(&mean)?.sqr()?;
        for p in &past[1..] {
            sq = sq.add(&p.sub(&mean)?.sqr()?)?;
        }
        let variance = sq.scale(1.0 / count)?.add_scalar(1e-12)?;
        let relative = variance.div(&variance.mean(1, true)?)?;
        relative.scale(1.0 - self.shrinkage)?.add_scalar(self.shrinkage)
    }
}

/// `q' W_z q / 2 + log(z' D^-1 z) / 2` per row, `[m]`.
fn kinetic(z: &Tensor, q: &Tensor, inv_metric: &Tensor) -> Result<Tensor> {
    let rows = z.dim("kinetic", 0)?;
    let zdz = z.sqr()?.mul(inv_metric)?.sum(1, true)?;
    let zdq = z.mul(inv_metric)?.mul(q)?.sum(1, true)?;
    let qdq = q.sqr()?.mul(inv_metric)?.sum(1, true)?;
    let quadratic = qdq.sub(&zdq.sqr()?.div(&zdz)?)?;
    quadratic.add(&zdz.log()?)?.scale(0.5)?.reshape(&[rows])
}

impl Kernel for MetricKernel {
    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal> {
        let z = &state.positions;
        let metric = self.metric(state)?;
        let inv_metric = metric.full_like(1.0)?.div(&metric)?;
        let xi = z.backend().randn(&z.dims(), 0.0, 1.0, rng)?;
        let q = project_tangent(z, &xi.mul(&metric.sqrt()?)?)?;
        let h_old = state.eval.energy.add(&kinetic(z, &q, &inv_metric)?)?;
        let (positions, q_end, eval) =
            spherical_leapfrog(target, z, &q, &state.eval, self.step_size, self.steps)?;
        let h_new = eval.energy.add(&kinetic(&positions, &q_end, &inv_metric)?)?;
        Ok(Proposal { positions, eval, log_accept: h_old.sub(&h_new)?, energy_evaluations: self.steps })
    }
}

fn validate_metric(history: usize, shrinkage: f64) -> Result<()> {
    positive("sampler.history", history)?;
    finite_in("sampler.shrinkage", shrinkage, 0.0, 1.0, true)
}

#[typetag::serde(name = "rmhmc")]
impl Sampler for Rmhmc {
    fn validate(&self) -> Result<()> {
        validate_common(self.rounds, self.step_size, self.n_adj)?;
        positive("sampler.leapfrog_steps", self.leapfrog_steps)?;
        validate_metric(self.history, self.shrinkage)
    }

    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis> {
        let kernel = MetricKernel {
            step_size: self.step_size,
            steps: self.leapfrog_steps,
            history: self.history,
            shrinkage: self.shrinkage,
        };
        crate::synthesize_chains(&kernel, self.n_adj, self.rounds, input, energy, barrier, rng)
    }
}

#[typetag::serde(name = "mmala")]
impl Sampler for Mmala {
    fn validate(&self) -> Result<()> {
        validate_common(self.rounds, self.step_size, self.n_adj)?;
        validate_metric(self.history, self.shrinkage)
    }

    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis> {
        let kernel = MetricKernel {
            step_size: self.step_size,
            steps: 1,
            history: self.history,
            shrinkage: self.shrinkage,
        };
        crate::synthesize_chains(&kernel, self.n_adj, self.rounds, input, energy, barrier, rng)
    }
}
