//! The round loop shared by every MCMC sampler: chain starts, Metropolis-Hastings, the ID
//! barrier, non-finite chains, outputs and per-round diagnostics. A sampler only supplies a
//! [`Kernel`] (its proposal and its Metropolis-Hastings log ratio) and registers it with
//! [`register_kernel!`](crate::register_kernel):
//!
//! ```
//! use hamos_api::Result;
//! use hamos_samplers::mcmc::{Chains, ChainState, Kernel, Proposal, Target};
//! use hamos_samplers::sphere::{self, HostRows};
//! use serde::{Deserialize, Serialize};
//!
//! /// Random-walk Metropolis with geodesic steps (a symmetric proposal).
//! #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! pub struct Walk {
//!     /// `rounds`, `step_size`, `n_adj`.
//!     #[serde(flatten)]
//!     pub chains: Chains,
//! }
//!
//! hamos_samplers::register_kernel!(Walk, "doc_walk", "geodesic random walk");
//!
//! impl Kernel for Walk {
//!     fn chains(&self) -> &Chains {
//!         &self.chains
//!     }
//!     fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn rand::RngCore) -> Result<Proposal> {
//!         let mut z = HostRows::download(&state.positions)?;
//!         let mut step = sphere::tangent_normal(&z, rng);
//!         sphere::geodesic_flow(&mut z, &mut step, self.chains.step_size);
//!         let positions = z.upload(state.positions.backend().as_ref())?;
//!         let eval = target.eval(&positions)?;
//!         let (old, new) = (sphere::energies(&state.eval)?, sphere::energies(&eval)?);
//!         let log_accept = old.iter().zip(&new).map(|(u, v)| u - v).collect();
//!         Ok(Proposal { positions, eval, log_accept, energy_evaluations: 1 })
//!     }
//! }
//! let sampler: Box<dyn hamos_api::Sampler> = toml::from_str("kind = \"doc_walk\"\nstep_size = 0.2")
//!     .map_err(|e| hamos_api::Error::Config(e.to_string()))?;
//! sampler.validate()?;
//! # Ok::<(), hamos_api::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt::Debug;

use hamos_api::config::{finite_in, positive};
use hamos_api::{
    Admission, ChainPairs, ClassBank, EnergyEval, IdBarrier, OodnessEnergy, OutlierTag, Result,
    RoundDiagnostics, Synthesis, SynthesisInput, Tensor, Thresholds,
};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

use crate::chains::chain_starts;

/// The config fields every MCMC sampler shares, flattened into its config with
/// `#[serde(flatten)]` (so TOML keeps `rounds = 5` beside the kernel's own fields). Defaults
/// from Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Chains {
    /// Synthesis rounds `R` (Table 4: 5).
    pub rounds: usize,
    /// Step size `epsilon` (Table 4: 0.1).
    pub step_size: f64,
    /// Adjacent classes per class `N_adj` (Table 4: 4).
    pub n_adj: usize,
}

impl Default for Chains {
    fn default() -> Self {
        Chains { rounds: 5, step_size: 0.1, n_adj: 4 }
    }
}

impl Chains {
    /// Checks the shared fields.
    pub fn validate(&self) -> Result<()> {
        positive("sampler.rounds", self.rounds)?;
        positive("sampler.n_adj", self.n_adj)?;
        finite_in("sampler.step_size", self.step_size, 0.0, 100.0, false)
    }
}

/// What a kernel proposes for every chain.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Proposed unit-norm positions `[m, d]`.
    pub positions: Tensor,
    /// Energy and gradient at the proposal (reused next round when accepted).
    pub eval: EnergyEval,
    /// Metropolis-Hastings log acceptance ratio per chain, e.g. `H(old) - H(new)`.
    pub log_accept: Vec<f64>,
    /// Energy evaluations per chain this proposal took (for the diagnostics).
    pub energy_evaluations: usize,
}

/// The chains' state between rounds.
#[derive(Debug, Clone)]
pub struct ChainState {
    /// Current unit-norm positions `[m, d]`.
    pub positions: Tensor,
    /// Energy and gradient at `positions`.
    pub eval: EnergyEval,
    /// Earlier positions, oldest first, not including `positions` (for adaptive metrics).
    pub history: Vec<Tensor>,
}

/// The energy a kernel samples, bound to the chains' class pairs and the buffer.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The OOD-ness energy.
    pub energy: &'a dyn OodnessEnergy,
    /// Each chain's class pair.
    pub pairs: &'a ChainPairs,
    /// The ID buffer.
    pub bank: &'a ClassBank,
}

impl Target<'_> {
    /// Energy and gradient at `z`.
    pub fn eval(&self, z: &Tensor) -> Result<EnergyEval> {
        self.energy.energy_and_grad(z, self.pairs, self.bank)
    }
}

/// One MCMC transition, proposed for all chains at once: what a sampler plugs into the round
/// loop. Register the config struct that implements it with
/// [`register_kernel!`](crate::register_kernel).
pub trait Kernel: Debug + Send + Sync {
    /// The shared settings (the config's flattened [`Chains`]).
    fn chains(&self) -> &Chains;

    /// Checks the kernel's own fields; the shared ones are checked by [`Chains::validate`].
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Proposes new positions with their MH log acceptance ratios. Draws its randomness from
    /// `rng` on the host, so every backend sees the same numbers; the built-in kernels draw
    /// their `m d` standard normals first ([`sphere::standard_normal`](crate::sphere::standard_normal)).
    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal>;
}

/// [`Chains::validate`], then [`Kernel::validate`].
pub fn validate(kernel: &dyn Kernel) -> Result<()> {
    kernel.chains().validate()?;
    kernel.validate()
}

/// Algorithm 1: starts `N_adj` chains per class between neighbouring prototypes and runs
/// `kernel` for its `rounds` rounds under Metropolis-Hastings and the barrier.
pub fn synthesize(
    kernel: &dyn Kernel,
    input: &SynthesisInput<'_>,
    energy: &dyn OodnessEnergy,
    barrier: &dyn IdBarrier,
    rng: &mut dyn RngCore,
) -> Result<Synthesis> {
    let settings = kernel.chains();
    let starts = chain_starts(input.prototypes, settings.n_adj)?;
    let pairs = ChainPairs::new(&starts.positions.backend(), starts.pairs)?;
    let target = Target { energy, pairs: &pairs, bank: input.bank };
    let rule = AcceptRule::Metropolis;
    let mut synthesis = run_chains(kernel, &target, barrier, &starts.positions, settings.rounds, rule, rng)?;
    synthesis.notes.splice(0..0, starts.notes);
    Ok(synthesis)
}

/// Registers an MCMC sampler: its [`Kernel`] config struct `$ty` under `$name` (the `kind` of
/// the `[sampler]` section) with a one-line description. Writes the `typetag` impl of
/// [`hamos_api::Sampler`] (validation and [`synthesize`]) and the registry entry from the one
/// name, so the two cannot disagree. The calling crate needs `typetag` as a dependency.
#[macro_export]
macro_rules! register_kernel {
    ($ty:ty, $name:literal, $description:literal) => {
        $crate::__private::hamos_api::register_plugin!(Sampler, $ty, $name, $description);

        #[typetag::serde(name = $name)]
        impl $crate::__private::hamos_api::Sampler for $ty {
            fn validate(&self) -> $crate::__private::hamos_api::Result<()> {
                $crate::mcmc::validate(self)
            }

            fn synthesize(
                &self,
                input: &$crate::__private::hamos_api::SynthesisInput<'_>,
                energy: &dyn $crate::__private::hamos_api::OodnessEnergy,
                barrier: &dyn $crate::__private::hamos_api::IdBarrier,
                rng: &mut dyn $crate::__private::rand::RngCore,
            ) -> $crate::__private::hamos_api::Result<$crate::__private::hamos_api::Synthesis> {
                $crate::mcmc::synthesize(self, input, energy, barrier, rng)
            }
        }
    };
}

/// How proposals are accepted. Only [`AcceptRule::Metropolis`] is correct; the other exists so
/// tests can show that the invariance checks catch a wrong rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptRule {
    /// Accept with probability `min(1, exp(log_accept))`.
    #[default]
    Metropolis,
    /// Accept every finite proposal (wrong: breaks detailed balance).
    AlwaysAccept,
}

/// Runs `rounds` rounds of `kernel` from `starts`, keeping a proposal only when it passes MH and
/// the barrier; records every chain's position after each round.
pub fn run_chains(
    kernel: &dyn Kernel,
    target: &Target<'_>,
    barrier: &dyn IdBarrier,
    starts: &Tensor,
    rounds: usize,
    rule: AcceptRule,
    rng: &mut dyn RngCore,
) -> Result<Synthesis> {
    let chains = target.pairs.len();
    let backend = starts.backend();
    let (mut thresholds, start_of) = start_thresholds(barrier, starts, target.bank)?;
    let (start_checks, start_exact) = thresholds.as_ref().map_or((0, 0), |t| (t.len(), t.exact_count()));
    let first_eval = target.eval(starts)?;
    let mut notes = first_eval.notes.clone();
    let mut state = ChainState { positions: starts.clone(), eval: first_eval, history: Vec::new() };
    let mut active = vec![true; chains];
    let mut stopped_chains = Vec::new();
    let mut diagnostics = Vec::with_capacity(rounds);
    let mut outputs = Vec::with_capacity(rounds);
    let mut tags = Vec::new();

    for round in 0..rounds {
        let proposal = kernel.propose(target, &state, rng)?;
        let uniforms: Vec<f64> = (0..chains).map(|_| rng.random::<f64>()).collect();
        let log_accept = &proposal.log_accept;
        if log_accept.len() != chains {
            return Err(hamos_api::Error::shape(
                "kernel proposal",
                format!("{} log acceptance ratios for {chains} chains", log_accept.len()),
            ));
        }
        let finite = finite_rows(&proposal)?;
        let passes_mh: Vec<bool> = (0..chains)
            .map(|c| match rule {
                AcceptRule::Metropolis => uniforms[c].ln() < log_accept[c],
                AcceptRule::AlwaysAccept => true,
            })
            .collect();
        // Only proposals that MH would keep need the barrier's verdict.
        let checked: Vec<usize> = (0..chains).filter(|&c| active[c] && finite[c] && passes_mh[c]).collect();
        let (admitted, admission) = barrier_verdicts(
            barrier,
            &proposal.positions,
            thresholds.as_mut(),
            &start_of,
            target.bank,
            &checked,
        )?;

        let mut stats = RoundDiagnostics { round, ..RoundDiagnostics::default() };
        let live_before = active.iter().filter(|&&a| a).count();
        stats.energy_evaluations =
            live_before * proposal.energy_evaluations + if round == 0 { chains } else { 0 };
        let (refined, exact) = admission.as_ref().map_or((0, 0), |a| (a.refined_starts, a.exact_evaluations));
        let (first_checks, first_exact) = if round == 0 { (start_checks, start_exact) } else { (0, 0) };
        stats.barrier_checks = if admission.is_some() { checked.len() } else { 0 } + refined + first_checks;
        stats.barrier_exact = exact + first_exact;
        let mut accept = vec![0.0f32; chains];
        let (mut accepted, mut abs_dh_sum) = (0usize, 0.0f64);
        for chain in 0..chains {
            if !active[chain] {
                continue;
            }
            if !finite[chain] {
                active[chain] = false;
                stopped_chains.push((chain, round));
                stats.non_finite += 1;
                continue;
            }
            stats.active_chains += 1;
            abs_dh_sum += log_accept[chain].abs();
            if passes_mh[chain] && !admitted[chain] {
                stats.barrier_rejections += 1;
            } else if passes_mh[chain] {
                accept[chain] = 1.0;
                accepted += 1;
            }
        }
        if stats.active_chains > 0 {
            stats.acceptance_rate = accepted as f64 / stats.active_chains as f64;
            stats.mean_abs_delta_h = abs_dh_sum / stats.active_chains as f64;
        }

        let mask = backend.from_f32(&accept, &[chains, 1])?;
        let previous = state.positions.clone();
        let positions = mask.where_mask(&proposal.positions, &state.positions)?;
        let energy = mask.reshape(&[chains])?.where_mask(&proposal.eval.energy, &state.eval.energy)?;
        let grad = mask.where_mask(&proposal.eval.grad, &state.eval.grad)?;
        for note in proposal.eval.notes {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }

        let cosines = previous.row_dot(&positions)?.to_vec_f32()?;
        let energies = energy.to_vec_f32()?;
        let live: Vec<usize> = (0..chains).filter(|&c| active[c]).collect();
        if !live.is_empty() {
            let n = live.len() as f64;
            stats.mean_angular_step =
                live.iter().map(|&c| f64::from(cosines[c]).clamp(-1.0, 1.0).acos()).sum::<f64>() / n;
            stats.mean_oodness = live.iter().map(|&c| (-f64::from(energies[c])).exp()).sum::<f64>() / n;
            outputs.push(positions.gather_rows(&live)?);
            tags.extend(live.iter().map(|&chain| {
                let (class_u, class_v) = target.pairs.pairs[chain];
                OutlierTag { chain, class_u, class_v, round }
            }));
        }
        diagnostics.push(stats);
        state.history.push(previous);
        state = ChainState {
            positions,
            eval: EnergyEval { energy, grad, notes: Vec::new() },
            history: std::mem::take(&mut state.history),
        };
    }

    let outliers = match outputs.len() {
        0 => backend.zeros(&[0, target.bank.dim()])?,
        _ => Tensor::cat(&outputs.iter().collect::<Vec<_>>(), 0)?,
    };
    Ok(Synthesis { outliers, tags, rounds: diagnostics, stopped_chains, notes })
}

/// The barrier's thresholds of the distinct chain starts (chains `(u, v)` and `(v, u)` usually
/// share one), and each chain's start among them.
fn start_thresholds(
    barrier: &dyn IdBarrier,
    starts: &Tensor,
    bank: &ClassBank,
) -> Result<(Option<Thresholds>, Vec<usize>)> {
    let width = starts.dims().get(1).copied().unwrap_or(1).max(1);
    let values = starts.to_vec_f32()?;
    let mut first_of: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut distinct = Vec::new();
    let slot: Vec<usize> = values
        .chunks(width)
        .enumerate()
        .map(|(row, v)| {
            *first_of.entry(v.iter().map(|x| x.to_bits()).collect()).or_insert_with(|| {
                distinct.push(row);
                distinct.len() - 1
            })
        })
        .collect();
    let unique = starts.gather_rows(&distinct)?;
    Ok((barrier.thresholds(&unique, bank)?, slot))
}

/// The barrier's verdict for each chain, evaluated for the chains in `checked` only (the others
/// read `true`, their proposal being rejected or stopped anyway), with the barrier's account of
/// the work (`None` without a barrier).
fn barrier_verdicts(
    barrier: &dyn IdBarrier,
    positions: &Tensor,
    thresholds: Option<&mut Thresholds>,
    start_of: &[usize],
    bank: &ClassBank,
    checked: &[usize],
) -> Result<(Vec<bool>, Option<Admission>)> {
    let chains = positions.dims().first().copied().unwrap_or(0);
    let mut verdicts = vec![true; chains];
    let Some(thresholds) = thresholds else { return Ok((verdicts, None)) };
    if checked.is_empty() {
        return Ok((verdicts, None));
    }
    let subset = positions.gather_rows(checked)?;
    let starts: Vec<usize> = checked.iter().map(|&c| start_of[c]).collect();
    let admission = barrier.admits(&subset, &starts, thresholds, bank)?;
    for (&chain, &admit) in checked.iter().zip(&admission.mask.to_vec_f32()?) {
        verdicts[chain] = admit != 0.0;
    }
    Ok((verdicts, Some(admission)))
}

/// Chains whose proposed position, energy and acceptance ratio are all finite.
fn finite_rows(proposal: &Proposal) -> Result<Vec<bool>> {
    let dims = proposal.positions.dims();
    let width = dims.get(1).copied().unwrap_or(1).max(1);
    let positions = proposal.positions.to_vec_f32()?;
    let energy = proposal.eval.energy.to_vec_f32()?;
    Ok(positions
        .chunks(width)
        .zip(energy.iter().zip(&proposal.log_accept))
        .map(|(row, (e, a))| row.iter().all(|x| x.is_finite()) && e.is_finite() && !a.is_nan())
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure there is a test failure

    use std::sync::Arc;

    use hamos_api::{Backend, ClassBank};

    use super::*;
    use crate::barrier::vmf_kde::VmfKdeBarrier;

    #[test]
    fn thresholds_of_repeated_starts_are_computed_once_and_match() {
        let backend: Arc<dyn Backend> = Arc::new(hamos_candle::CandleBackend::cpu());
        let mut rng = hamos_api::rng_from_seed(41);
        let rows = hamos_api::backend::randn_host(3 * 20 * 6, 0.0, 1.0, &mut rng);
        let labels: Vec<usize> = (0..60).map(|i| i / 20).collect();
        let bank = ClassBank::from_rows(&backend, &rows, 6, &labels, 3, 20).unwrap();
        let distinct = hamos_api::backend::randn_host(2 * 6, 0.0, 1.0, &mut rng);
        // Starts 0, 1, 0, 0, 1: two distinct rows.
        let order = [0usize, 1, 0, 0, 1];
        let starts: Vec<f32> = order.iter().flat_map(|&i| distinct[i * 6..(i + 1) * 6].to_vec()).collect();
        let starts = backend.from_f32(&starts, &[5, 6]).unwrap().l2_normalize(1).unwrap();
        // Unscreened, so every threshold is exact at once.
        let barrier = VmfKdeBarrier { screen: false, ..VmfKdeBarrier::default() };
        let (thresholds, start_of) = start_thresholds(&barrier, &starts, &bank).unwrap();
        let thresholds = thresholds.unwrap();
        assert_eq!((thresholds.len(), start_of.clone()), (2, vec![0, 1, 0, 0, 1]));
        let want = barrier.exact_energy(&starts, &bank).unwrap().to_vec_f32().unwrap();
        for (chain, &start) in start_of.iter().enumerate() {
            let got = thresholds.exact_value(start).unwrap();
            assert_eq!(got, want[chain] - barrier.delta as f32, "chain {chain}");
        }
    }
}
