//! The vMF kernel-density ID barrier of Eqns 5 and 10-12.

use hamos_api::config::finite_in;
use hamos_api::{Admission, ClassBank, IdBarrier, Result, Tensor};
use serde::{Deserialize, Serialize};

/// `P_c(z) = p_c(z) / sum_i p_i(z)` with `p_c` a vMF kernel density over the whole buffer of
/// class `c` (bandwidth `kappa`); a proposal is rejected when
/// `-log max_c P_c(z) <= -log max_c P_c(b) - delta`, `b` the chain's start.
///
/// Computed in log space: `log p_c(z) = logsumexp_i(kappa z.z_i) - log n_c`. The vMF normalizer
/// `Z_d(kappa)` is the same for every class, so it cancels in Eqn 12 and is never computed (it
/// under- or overflows for `d >= 512`).
///
/// With `screen` (the default) large batches of proposals are first screened with bounds from
/// the class moments (`screen.rs`); only proposals the bounds cannot decide get the exact
/// density. The verdicts are the same either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmfKdeBarrier {
    /// Kernel bandwidth `kappa` (Table 4: 2.0).
    pub kappa: f64,
    /// Hard margin `delta` (Table 4: 0.1).
    pub delta: f64,
    /// Screen proposals with moment bounds before the exact density (speed only).
    pub screen: bool,
}

impl Default for VmfKdeBarrier {
    fn default() -> Self {
        VmfKdeBarrier { kappa: 2.0, delta: 0.1, screen: true }
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

impl VmfKdeBarrier {
    /// `-log max_c P_c(z)` `[m]`, from the exact class densities.
    pub fn exact_energy(&self, z: &Tensor, bank: &ClassBank) -> Result<Tensor> {
        if let Some(class) = bank.counts().iter().position(|&n| n == 0) {
            return Err(hamos_api::Error::Data(format!("vmf_kde barrier: class {class} has no embeddings")));
        }
        let log_density = self.class_log_density(z, bank)?;
        // -log max_c P_c = logsumexp_c log p_c - max_c log p_c
        log_density.logsumexp(1, false)?.sub(&log_density.max(1, false)?)
    }
}

#[typetag::serde(name = "vmf_kde")]
impl IdBarrier for VmfKdeBarrier {
    fn validate(&self) -> Result<()> {
        finite_in("barrier.kappa", self.kappa, 0.0, 1e4, false)?;
        finite_in("barrier.delta", self.delta, f64::NEG_INFINITY, f64::INFINITY, true)
    }

    fn id_energy(&self, z: &Tensor, bank: &ClassBank) -> Result<Option<Tensor>> {
        self.exact_energy(z, bank).map(Some)
    }

    fn margin(&self) -> f64 {
        self.delta
    }

    fn admits(
        &self,
        candidates: &Tensor,
        thresholds: Option<&Tensor>,
        bank: &ClassBank,
    ) -> Result<Option<Admission>> {
        let Some(thresholds) = thresholds else { return Ok(None) };
        let count = candidates.dim("vmf_kde admits", 0)?;
        if !(self.screen && super::screen::pays_off(count, bank)) {
            let energy = self.exact_energy(candidates, bank)?;
            return Ok(Some(Admission { mask: energy.gt(thresholds)?, exact_evaluations: count }));
        }
        let bounds = super::screen::energy_bounds(candidates, bank, self.kappa)?;
        let limits = thresholds.to_vec_f32()?;
        let mut verdicts: Vec<Option<bool>> =
            bounds.iter().zip(&limits).map(|(b, &t)| super::screen::verdict(*b, f64::from(t))).collect();
        let undecided: Vec<i64> = (0..count).filter(|&i| verdicts[i].is_none()).map(|i| i as i64).collect();
        if !undecided.is_empty() {
            let rows = candidates.backend().from_i64(&undecided, &[undecided.len()])?;
            let energy = self.exact_energy(&candidates.index_select(0, &rows)?, bank)?;
            let passes = energy.gt(&thresholds.index_select(0, &rows)?)?.to_vec_f32()?;
            for (&i, &pass) in undecided.iter().zip(&passes) {
                verdicts[i as usize] = Some(pass != 0.0);
            }
        }
        let mask: Vec<f32> = verdicts.iter().map(|v| if *v == Some(true) { 1.0 } else { 0.0 }).collect();
        let mask = candidates.backend().from_f32(&mask, &[count])?;
        Ok(Some(Admission { mask, exact_evaluations: undecided.len() }))
    }
}
