use std::fmt::Debug;

use super::ClassBank;
use crate::error::Result;
use crate::tensor::Tensor;

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

    /// `1` where a candidate passes (`-log max_c P_c(z) > t`), `0` where the barrier rejects it;
    /// `None` when nothing is ever rejected.
    fn admits(
        &self,
        candidates: &Tensor,
        thresholds: Option<&Tensor>,
        bank: &ClassBank,
    ) -> Result<Option<Tensor>> {
        let Some(thresholds) = thresholds else { return Ok(None) };
        match self.id_energy(candidates, bank)? {
            Some(energy) => Ok(Some(energy.gt(thresholds)?)),
            None => Ok(None),
        }
    }
}
