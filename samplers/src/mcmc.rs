//! The round loop shared by every MCMC sampler: Metropolis-Hastings, the ID barrier,
//! non-finite chains, outputs and per-round diagnostics. A sampler only supplies a [`Kernel`].

use hamos_api::{
    Admission, ChainPairs, ClassBank, EnergyEval, IdBarrier, OodnessEnergy, OutlierTag, Result,
    RoundDiagnostics, Synthesis, Tensor, Thresholds,
};
use std::collections::HashMap;

use rand::{Rng, RngCore};

/// What a kernel proposes for every chain.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Proposed unit-norm positions `[m, d]`.
    pub positions: Tensor,
    /// Energy and gradient at the proposal (reused next round when accepted).
    pub eval: EnergyEval,
    /// Metropolis-Hastings log acceptance ratio `[m]`, e.g. `H(old) - H(new)`.
    pub log_accept: Tensor,
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

/// One MCMC transition, proposed for all chains at once.
pub trait Kernel {
    /// Proposes new positions with their MH log acceptance ratios. Draws its randomness from
    /// `rng` on the host, so every backend sees the same numbers.
    fn propose(&self, target: &Target<'_>, state: &ChainState, rng: &mut dyn RngCore) -> Result<Proposal>;
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
        let log_accept = proposal.log_accept.to_vec_f32()?;
        let finite = finite_rows(&proposal)?;
        let passes_mh: Vec<bool> = (0..chains)
            .map(|c| match rule {
                AcceptRule::Metropolis => uniforms[c].ln() < f64::from(log_accept[c]),
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
            abs_dh_sum += f64::from(log_accept[chain]).abs();
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
    let log_accept = proposal.log_accept.to_vec_f32()?;
    Ok(positions
        .chunks(width)
        .zip(energy.iter().zip(&log_accept))
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
