//! The vMF kernel-density ID barrier of Eqns 5 and 10-12.

use hamos_api::config::finite_in;
use hamos_api::{ClassBank, IdBarrier, Result, Tensor};
use serde::{Deserialize, Serialize};

/// `P_c(z) = p_c(z) / sum_i p_i(z)` with `p_c` a vMF kernel density over the whole buffer of
/// class `c` (bandwidth `kappa`); a proposal is rejected when
/// `-log max_c P_c(z) <= -log max_c P_c(b) - delta`, `b` the chain's start.
///
/// Computed in log space: `log p_c(z) = logsumexp_i(kappa z.z_i) - log n_c`. The vMF normalizer
/// `Z_d(kappa)` is the same for every class, so it cancels in Eqn 12 and is never computed (it
/// under- or overflows for `d >= 512`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmfKdeBarrier {
    /// Kernel bandwidth `kappa` (Table 4: 2.0).
    pub kappa: f64,
    /// Hard margin `delta` (Table 4: 0.1).
    pub delta: f64,
}

impl Default for VmfKdeBarrier {
    fn default() -> Self {
        VmfKdeBarrier { kappa: 2.0, delta: 0.1 }
    }
}

hamos_api::register_plugin!(
    Barrier,
    VmfKdeBarrier,
    "vmf_kde",
    "rejects proposals far more ID-like than the chain start, by vMF kernel density (Eqns 5, 10-12)"
);

impl VmfKdeBarrier {
    /// `log p_c(z)` up to the shared normalizer, `[m, c]`.
    pub fn class_log_density(&self, z: &Tensor, bank: &ClassBank) -> Result<Tensor> {
        let (classes, dim) = (bank.num_classes(), bank.dim());
        let zd = z.dims();
        if zd.len() != 2 || zd[1] != dim {
            return Err(hamos_api::Error::shape(
                "vmf_kde",
                format!("positions {zd:?} do not have dimension {dim}"),
            ));
        }
        let log_kernel_sums = z.class_logsumexp(bank.embeddings(), bank.counts(), self.kappa)?;
        let log_counts: Vec<f32> = bank.counts().iter().map(|&n| (n.max(1) as f32).ln()).collect();
        let log_counts = z.backend().from_f32(&log_counts, &[1, classes])?;
        log_kernel_sums.sub(&log_counts)
    }
}

#[typetag::serde(name = "vmf_kde")]
impl IdBarrier for VmfKdeBarrier {
    fn validate(&self) -> Result<()> {
        finite_in("barrier.kappa", self.kappa, 0.0, 1e4, false)?;
        finite_in("barrier.delta", self.delta, f64::NEG_INFINITY, f64::INFINITY, true)
    }

    fn id_energy(&self, z: &Tensor, bank: &ClassBank) -> Result<Option<Tensor>> {
        if let Some(class) = bank.counts().iter().position(|&n| n == 0) {
            return Err(hamos_api::Error::Data(format!("vmf_kde barrier: class {class} has no embeddings")));
        }
        let log_density = self.class_log_density(z, bank)?;
        // -log max_c P_c = logsumexp_c log p_c - max_c log p_c
        let energy = log_density.logsumexp(1, false)?.sub(&log_density.max(1, false)?)?;
        Ok(Some(energy))
    }

    fn margin(&self) -> f64 {
        self.delta
    }
}
