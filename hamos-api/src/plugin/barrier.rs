use std::fmt::Debug;

use super::ClassBank;
use crate::error::Result;
use crate::tensor::Tensor;

/// The barrier's verdict on a batch of candidates.
#[derive(Debug, Clone)]
pub struct Admission {
    /// `[n]`: 1 where a candidate passes, 0 where the barrier rejects it.
    pub mask: Tensor,
    /// Candidates whose ID density was computed exactly (the others were decided by bounds);
    /// for diagnostics and FLOP counts.
    pub exact_evaluations: usize,
}

/// The ID barrier of Eqn 5: rejects proposals that are much more ID-like than the chain's start.
///
/// Required: [`id_energy`](Self::id_energy), [`margin`](Self::margin). Provided: the threshold
/// and the admission test built on them.
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

    /// `t = -log max_c P_c(b) - delta` per chain start `b` (Eqn 5), `[m]`.
    fn thresholds(&self, starts: &Tensor, bank: &ClassBank) -> Result<Option<Tensor>> {
        self.id_energy(starts, bank)?.map(|e| e.add_scalar(-self.margin())).transpose()
    }

    /// Which candidates pass (`-log max_c P_c(z) > t`); `None` when nothing is ever rejected.
    /// Overrides may decide some candidates from cheaper bounds, but must reach the same
    /// verdicts as this default.
    fn admits(
        &self,
        candidates: &Tensor,
        thresholds: Option<&Tensor>,
        bank: &ClassBank,
    ) -> Result<Option<Admission>> {
        let Some(thresholds) = thresholds else { return Ok(None) };
        match self.id_energy(candidates, bank)? {
            Some(energy) => Ok(Some(Admission {
                mask: energy.gt(thresholds)?,
                exact_evaluations: candidates.dims().first().copied().unwrap_or(0),
            })),
            None => Ok(None),
        }
    }
}
