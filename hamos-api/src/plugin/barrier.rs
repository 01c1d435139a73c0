use std::fmt::Debug;

use super::ClassBank;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The barrier's verdict on a batch of candidates.
#[derive(Debug, Clone)]
pub struct Admission {
    /// `[n]`: 1 where a candidate passes, 0 where the barrier rejects it.
    pub mask: Tensor,
    /// Points whose ID density this call computed exactly: candidates the bounds could not
    /// decide plus chain starts whose threshold it had to make exact. For diagnostics and FLOP
    /// counts.
    pub exact_evaluations: usize,
    /// Of those, chain starts whose threshold was made exact.
    pub refined_starts: usize,
}

/// The thresholds `t = E(b) - delta` (Eqn 5) of a run's distinct chain starts `b`. Each is known
/// exactly or only within bounds; a barrier that decides from bounds makes a threshold exact
/// only when a verdict needs it ([`IdBarrier::make_exact`]).
#[derive(Debug, Clone)]
pub struct Thresholds {
    starts: Tensor,
    bounds: Vec<(f64, f64)>,
    exact: Vec<Option<f32>>,
}

impl Thresholds {
    /// Exact thresholds `values` of the `[n, d]` `starts`.
    pub fn exact(starts: Tensor, values: &[f32]) -> Result<Self> {
        let mut thresholds = Self::bounded(starts, vec![(f64::NEG_INFINITY, f64::INFINITY); values.len()])?;
        for (start, &value) in values.iter().enumerate() {
            thresholds.set_exact(start, value);
        }
        Ok(thresholds)
    }

    /// Thresholds of the `[n, d]` `starts` known within `bounds` (`lower <= t <= upper`).
    pub fn bounded(starts: Tensor, bounds: Vec<(f64, f64)>) -> Result<Self> {
        let count = starts.dim("thresholds", 0)?;
        if bounds.len() != count {
            return Err(Error::shape("thresholds", format!("{} bounds for {count} starts", bounds.len())));
        }
        Ok(Thresholds { starts, exact: vec![None; count], bounds })
    }

    /// The chain starts, `[n, d]`.
    pub fn starts(&self) -> &Tensor {
        &self.starts
    }

    /// Number of starts.
    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    /// Whether there are no starts.
    pub fn is_empty(&self) -> bool {
        self.bounds.is_empty()
    }

    /// Bounds on start `start`'s threshold (both equal to it once exact).
    ///
    /// # Panics
    /// If `start >= self.len()` ([`check_starts`] validates a batch of start indices).
    pub fn bounds(&self, start: usize) -> (f64, f64) {
        self.bounds[start]
    }

    /// Start `start`'s exact threshold, if known (`None` also past the last start).
    pub fn exact_value(&self, start: usize) -> Option<f32> {
        self.exact.get(start).copied().flatten()
    }

    /// Records start `start`'s exact threshold.
    ///
    /// # Panics
    /// If `start >= self.len()`.
    pub fn set_exact(&mut self, start: usize, value: f32) {
        self.exact[start] = Some(value);
        self.bounds[start] = (f64::from(value), f64::from(value));
    }

    /// How many thresholds are exact.
    pub fn exact_count(&self) -> usize {
        self.exact.iter().filter(|t| t.is_some()).count()
    }

    /// The distinct starts among `starts` whose threshold is not exact yet, ascending (indices
    /// past the last start are not starts and are left out).
    pub fn missing(&self, starts: &[usize]) -> Vec<usize> {
        let mut missing: Vec<usize> =
            starts.iter().copied().filter(|&s| matches!(self.exact.get(s), Some(None))).collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }
}

/// The ID barrier of Eqn 5: rejects proposals that are much more ID-like than the chain's start.
///
/// Required: [`id_energy`](Self::id_energy), [`margin`](Self::margin). Provided: the thresholds
/// and the admission test built on them; a barrier with cheaper bounds overrides
/// [`thresholds`](Self::thresholds) and [`admits`](Self::admits) and must reach the verdicts of
/// the defaults.
#[typetag::serde(tag = "kind")]
pub trait IdBarrier: Debug + Send + Sync {
    /// Checks the config; called before any run starts.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// `-log max_c P_c(z)` `[m]` for unit-norm `z` `[m, d]`, or `None` for a barrier that never
    /// rejects.
    fn id_energy(&self, z: &Tensor, bank: &ClassBank) -> Result<Option<Tensor>>;

    /// The hard margin `delta` of Eqn 5.
    fn margin(&self) -> f64;

    /// The thresholds `t = -log max_c P_c(b) - delta` of the distinct chain starts `b` `[n, d]`
    /// (Eqn 5), or `None` for a barrier that never rejects. Provided: all exact.
    fn thresholds(&self, starts: &Tensor, bank: &ClassBank) -> Result<Option<Thresholds>> {
        let Some(energy) = self.id_energy(starts, bank)? else { return Ok(None) };
        let values = energy.add_scalar(-self.margin())?.to_vec_f32()?;
        Thresholds::exact(starts.clone(), &values).map(Some)
    }

    /// Makes the thresholds of `starts` exact where they are not yet; returns how many it
    /// computed. Provided, on [`id_energy`](Self::id_energy).
    fn make_exact(&self, thresholds: &mut Thresholds, starts: &[usize], bank: &ClassBank) -> Result<usize> {
        let missing = thresholds.missing(starts);
        if missing.is_empty() {
            return Ok(0);
        }
        let points = thresholds.starts().gather_rows(&missing)?;
        let Some(energy) = self.id_energy(&points, bank)? else {
            return Err(Error::Data("id barrier: thresholds of a barrier without an ID energy".into()));
        };
        for (&start, &value) in missing.iter().zip(&energy.add_scalar(-self.margin())?.to_vec_f32()?) {
            thresholds.set_exact(start, value);
        }
        Ok(missing.len())
    }

    /// Which candidates pass (`-log max_c P_c(z) > t`), candidate `i` judged against the
    /// threshold of start `starts[i]`. Provided: exact energies and exact thresholds.
    fn admits(
        &self,
        candidates: &Tensor,
        starts: &[usize],
        thresholds: &mut Thresholds,
        bank: &ClassBank,
    ) -> Result<Admission> {
        check_starts(candidates, starts, thresholds)?;
        let refined_starts = self.make_exact(thresholds, starts, bank)?;
        let backend = candidates.backend();
        let Some(energy) = self.id_energy(candidates, bank)? else {
            let mask = backend.full(1.0, &[starts.len()])?;
            return Ok(Admission { mask, exact_evaluations: refined_starts, refined_starts });
        };
        let mask: Vec<f32> = energy
            .to_vec_f32()?
            .iter()
            .zip(starts)
            .map(|(&e, &s)| if thresholds.exact_value(s).is_some_and(|t| e > t) { 1.0 } else { 0.0 })
            .collect();
        Ok(Admission {
            mask: backend.from_f32(&mask, &[mask.len()])?,
            exact_evaluations: starts.len() + refined_starts,
            refined_starts,
        })
    }
}

/// Checks that `starts` names one valid start per candidate row.
pub fn check_starts(candidates: &Tensor, starts: &[usize], thresholds: &Thresholds) -> Result<()> {
    let count = candidates.dim("id barrier admits", 0)?;
    if starts.len() != count {
        return Err(Error::shape(
            "id barrier admits",
            format!("{} starts for {count} candidates", starts.len()),
        ));
    }
    if let Some(&bad) = starts.iter().find(|&&s| s >= thresholds.len()) {
        return Err(Error::shape(
            "id barrier admits",
            format!("start {bad} out of range for {} thresholds", thresholds.len()),
        ));
    }
    Ok(())
}
