//! An invariance check any [`Kernel`] can run, built-in or a user's own: a correct MCMC
//! transition leaves its target distribution invariant. Started from exact draws of a von
//! Mises-Fisher distribution `vMF(e1, kappa)` on the sphere `S^2` (energy `U(z) = -kappa e1.z`),
//! the chains must still be vMF-distributed after any number of rounds, so the mean of `e1.z`
//! stays at its closed form `A_3(kappa) = coth(kappa) - 1 / kappa`. A kernel whose
//! Metropolis-Hastings log ratio is wrong drifts away from it.
//!
//! ```
//! use hamos_samplers::hmc::Hmc;
//! use hamos_samplers::invariance::{vmf_invariance, InvarianceOptions};
//! use hamos_samplers::mcmc::{AcceptRule, Chains};
//! let backend: std::sync::Arc<dyn hamos_api::Backend> = std::sync::Arc::new(hamos_candle::CandleBackend::cpu());
//! let hmc = Hmc { chains: Chains { step_size: 0.9, ..Chains::default() }, leapfrog_steps: 3 };
//! let options = InvarianceOptions { chains: 1000, ..InvarianceOptions::default() };
//! let check = vmf_invariance(&hmc, &backend, AcceptRule::Metropolis, &options)?;
//! assert!(check.holds(4.0), "{check}");
//! # Ok::<(), hamos_api::Error>(())
//! ```

use std::sync::Arc;

use hamos_api::{Backend, ChainPairs, ClassBank, EnergyEval, Error, OodnessEnergy, Result, Tensor};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::barrier::none::NoBarrier;
use crate::mcmc::{run_chains, AcceptRule, Kernel, Target};

/// The vMF energy `U(z) = -kappa mean.z`: a smooth target with a known distribution. It ignores
/// the chain pairs and the bank (not a plugin a run config can select).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmfEnergy {
    /// Concentration.
    pub kappa: f64,
    /// Unit mean direction.
    pub mean: Vec<f32>,
}

#[typetag::serde(name = "invariance_vmf")]
impl OodnessEnergy for VmfEnergy {
    fn energy_and_grad(&self, z: &Tensor, _pairs: &ChainPairs, _bank: &ClassBank) -> Result<EnergyEval> {
        let [rows, dim] = z.dims()[..] else {
            return Err(Error::shape(
                "vMF energy",
                format!("positions must be [rows, dim], got {:?}", z.dims()),
            ));
        };
        let mean = z.backend().from_f32(&self.mean, &[dim, 1])?;
        let energy = z.matmul(&mean)?.scale(-self.kappa)?.reshape(&[rows])?;
        let grad = mean.t()?.scale(-self.kappa)?.broadcast_as(&[rows, dim])?;
        Ok(EnergyEval { energy, grad, notes: Vec::new() })
    }
}

/// The size of the check.
#[derive(Debug, Clone, PartialEq)]
pub struct InvarianceOptions {
    /// vMF concentration of the target.
    pub kappa: f64,
    /// Independent chains (the standard error shrinks as `1 / sqrt(chains)`).
    pub chains: usize,
    /// Rounds each chain runs.
    pub rounds: usize,
    /// Seed of the starts and of the kernel's randomness.
    pub seed: u64,
}

impl Default for InvarianceOptions {
    fn default() -> Self {
        InvarianceOptions { kappa: 3.0, chains: 3000, rounds: 8, seed: 23 }
    }
}

/// The outcome: the measured mean of `e1.z` after the last round against `A_3(kappa)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvarianceCheck {
    /// `A_3(kappa)`, the target's mean of `e1.z`.
    pub expected: f64,
    /// The chains' mean of `e1.z` after the last round.
    pub measured: f64,
    /// Its standard error.
    pub standard_error: f64,
}

impl InvarianceCheck {
    /// `(measured - expected) / standard_error`.
    pub fn z_score(&self) -> f64 {
        (self.measured - self.expected) / self.standard_error
    }

    /// Whether the measured mean is within `standard_errors` of the target's.
    pub fn holds(&self, standard_errors: f64) -> bool {
        self.z_score().abs() < standard_errors
    }
}

impl std::fmt::Display for InvarianceCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mean e1.z {:.4} against the target's {:.4} (standard error {:.4}, z = {:.1})",
            self.measured,
            self.expected,
            self.standard_error,
            self.z_score()
        )
    }
}

/// Exact `vMF(e1, kappa)` draws on `S^2` (Wood's inversion, in closed form in 3 dimensions).
pub fn vmf_draws(n: usize, kappa: f64, rng: &mut impl Rng) -> Vec<f32> {
    (0..n)
        .flat_map(|_| {
            let u: f64 = rng.random();
            let w = 1.0 + (u + (1.0 - u) * (-2.0 * kappa).exp()).ln() / kappa;
            let phi = std::f64::consts::TAU * rng.random::<f64>();
            let r = (1.0 - w * w).max(0.0).sqrt();
            [w as f32, (r * phi.cos()) as f32, (r * phi.sin()) as f32]
        })
        .collect()
}

/// Runs `kernel` on the vMF target from exact draws (no barrier) with acceptance `rule` and
/// measures the mean of `e1.z` after `options.rounds` rounds.
pub fn vmf_invariance(
    kernel: &dyn Kernel,
    backend: &Arc<dyn Backend>,
    rule: AcceptRule,
    options: &InvarianceOptions,
) -> Result<InvarianceCheck> {
    let InvarianceOptions { kappa, chains, rounds, seed } = *options;
    if chains < 2 || rounds == 0 || !(kappa > 0.0 && kappa.is_finite()) {
        return Err(Error::invalid(
            "invariance options",
            format!("need chains >= 2, rounds >= 1 and a finite kappa > 0 (got {chains}, {rounds}, {kappa})"),
        ));
    }
    let mut rng = hamos_api::rng_from_seed(seed);
    // The energy ignores the bank; the round loop needs one (two classes of two rows).
    let rows: Vec<f32> = vmf_draws(4, kappa, &mut rng);
    let bank = ClassBank::from_rows(backend, &rows, 3, &[0, 0, 1, 1], 2, 2)?;
    let pairs = ChainPairs::new(backend, vec![(0, 1); chains])?;
    let energy = VmfEnergy { kappa, mean: vec![1.0, 0.0, 0.0] };
    let target = Target { energy: &energy, pairs: &pairs, bank: &bank };
    let starts = backend.from_f32(&vmf_draws(chains, kappa, &mut rng), &[chains, 3])?;
    let out = run_chains(kernel, &target, &NoBarrier {}, &starts, rounds, rule, &mut rng)?;
    let positions = out.outliers.to_rows_f32()?;
    if positions.len() < chains {
        return Err(Error::Data(format!("the kernel left {} of {chains} chains", positions.len())));
    }
    let last: Vec<f64> = positions[positions.len() - chains..].iter().map(|r| f64::from(r[0])).collect();
    let n = chains as f64;
    let measured = last.iter().sum::<f64>() / n;
    let variance = last.iter().map(|w| (w - measured).powi(2)).sum::<f64>() / (n - 1.0);
    Ok(InvarianceCheck {
        expected: 1.0 / kappa.tanh() - 1.0 / kappa,
        measured,
        standard_error: (variance / n).sqrt(),
    })
}

/// The relative disagreement between an energy's gradient and central finite differences of the
/// energy, over the rows of `z` (unit-norm `[m, d]`), each along a random tangent direction `v`
/// drawn from `rng`: `|a - f| / |f|` for the vectors (over rows) of `a = grad.v` and
/// `f = (U(s(z + h v)) - U(s(z - h v))) / 2h`, where `s` scales back onto the sphere (a tangent
/// step leaves it only at second order, so `f` matches `a` up to `O(h^2)`). Energies are
/// evaluated in `f32`; `h` around `1e-3` balances truncation against rounding, and keeps a
/// piecewise energy (such as a k-th nearest neighbour distance) on one piece. A correct gradient
/// gives about `1e-3`; a wrong one, order 1.
pub fn energy_gradient_error(
    energy: &dyn OodnessEnergy,
    z: &Tensor,
    pairs: &ChainPairs,
    bank: &ClassBank,
    h: f64,
    rng: &mut impl Rng,
) -> Result<f64> {
    let [rows, dim] = z.dims()[..] else {
        return Err(Error::shape(
            "energy gradient check",
            format!("positions must be [rows, dim], got {:?}", z.dims()),
        ));
    };
    let backend = z.backend().clone();
    let positions = z.to_vec_f32()?;
    let eval = energy.energy_and_grad(z, pairs, bank)?;
    let grad = eval.grad.to_vec_f32()?;
    let mut directions = vec![0f64; rows * dim];
    for (row, direction) in directions.chunks_mut(dim).enumerate() {
        let at = &positions[row * dim..(row + 1) * dim];
        for v in direction.iter_mut() {
            *v = rng.random::<f64>() - 0.5;
        }
        let along: f64 = direction.iter().zip(at).map(|(v, z)| v * f64::from(*z)).sum();
        direction.iter_mut().zip(at).for_each(|(v, z)| *v -= along * f64::from(*z));
        let norm = direction.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        direction.iter_mut().for_each(|v| *v /= norm);
    }
    let shifted = |sign: f64| -> Result<Vec<f32>> {
        let mut moved = Vec::with_capacity(rows * dim);
        for row in 0..rows {
            let point: Vec<f64> = (0..dim)
                .map(|j| f64::from(positions[row * dim + j]) + sign * h * directions[row * dim + j])
                .collect();
            let norm = point.iter().map(|v| v * v).sum::<f64>().sqrt();
            moved.extend(point.iter().map(|v| (v / norm) as f32));
        }
        let tensor = backend.from_f32(&moved, &[rows, dim])?;
        energy.energy(&tensor, pairs, bank)?.to_vec_f32()
    };
    let (up, down) = (shifted(1.0)?, shifted(-1.0)?);
    let (mut error, mut scale) = (0f64, 0f64);
    for row in 0..rows {
        let analytic: f64 =
            (0..dim).map(|j| f64::from(grad[row * dim + j]) * directions[row * dim + j]).sum();
        let numeric = (f64::from(up[row]) - f64::from(down[row])) / (2.0 * h);
        error += (analytic - numeric).powi(2);
        scale += numeric.powi(2);
    }
    Ok(error.sqrt() / scale.sqrt().max(1e-12))
}
