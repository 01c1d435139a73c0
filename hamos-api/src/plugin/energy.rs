use std::fmt::Debug;

use super::{ChainPairs, ClassBank};
use crate::error::Result;
use crate::tensor::Tensor;

/// An OOD-ness energy `U(z)` for chains that each sit between a pair of classes (Eqns 1-4).
///
/// Required: [`energy_and_grad`](Self::energy_and_grad). Provided: [`validate`](Self::validate),
/// [`energy`](Self::energy).
#[typetag::serde(tag = "kind")]
pub trait OodnessEnergy: Debug + Send + Sync {
    /// Checks the config; called before any run starts.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// `U(z)` `[m]` and its Euclidean gradient `[m, d]` for unit-norm positions `z` `[m, d]`,
    /// chain `i` measured against the class pair `pairs[i]` of `bank`.
    fn energy_and_grad(&self, z: &Tensor, pairs: &ChainPairs, bank: &ClassBank) -> Result<EnergyEval>;

    /// `U(z)` alone.
    fn energy(&self, z: &Tensor, pairs: &ChainPairs, bank: &ClassBank) -> Result<Tensor> {
        Ok(self.energy_and_grad(z, pairs, bank)?.energy)
    }
}

/// What an energy evaluation returns.
#[derive(Debug, Clone)]
pub struct EnergyEval {
    /// `U(z)`, shape `[m]`.
    pub energy: Tensor,
    /// `dU/dz`, shape `[m, d]` (Euclidean, not yet projected to the tangent space).
    pub grad: Tensor,
    /// Facts worth surfacing in diagnostics, e.g. "class 3 holds 50 < k = 200 embeddings".
    pub notes: Vec<String>,
}
