//! A barrier that never rejects.

use hamos_api::{ClassBank, IdBarrier, Result, Tensor};
use serde::{Deserialize, Serialize};

/// No ID barrier: every proposal that passes Metropolis-Hastings is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoBarrier {}

hamos_api::register_plugin!(Barrier, NoBarrier, "none", "no ID barrier: only Metropolis-Hastings decides");

#[typetag::serde(name = "none")]
impl IdBarrier for NoBarrier {
    fn id_energy(&self, _z: &Tensor, _bank: &ClassBank) -> Result<Option<Tensor>> {
        Ok(None)
    }

    fn margin(&self) -> f64 {
        0.0
    }
}
