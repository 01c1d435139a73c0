//! The vMF kernel-density ID barrier of Eqns 5 and 10-12.

use hamos_api::config::finite_in;
use hamos_api::{check_starts, Admission, ClassBank, IdBarrier, Result, Tensor, Thresholds};

use super::screen::{verdict, Screen};
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

impl VmfKdeBarrier {
    /// Bounds `(lo_c, hi_c)` on `log p_c(z)` (as [`class_log_density`](Self::class_log_density))
    /// for every row of `z` and class, `[m][c]`, from the class moments the screening uses: the
    /// first tier (class means and variance bounds) or, with `tight`, the second (the exact
    /// quadratic forms `z^T S_c z`).
    pub fn class_log_density_bounds(
        &self,
        z: &Tensor,
        bank: &ClassBank,
        tight: bool,
    ) -> Result<Vec<Vec<(f64, f64)>>> {
        let screen = Screen::new(z, bank, self.kappa)?;
        let (rows, classes) = (z.dim("vmf_kde bounds", 0)?, bank.num_classes());
        let variances = if tight { Some(screen.variances(z)?) } else { None };
        Ok((0..rows)
            .map(|row| {
                let forms = variances.as_ref().map(|v| &v[row * classes..(row + 1) * classes]);
                let (lower, upper) = screen.class_bounds(row, forms);
                lower.into_iter().zip(upper).collect()
            })
            .collect())
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

    fn thresholds(&self, starts: &Tensor, bank: &ClassBank) -> Result<Option<Thresholds>> {
        let count = starts.dim("vmf_kde thresholds", 0)?;
        if !(self.screen && super::screen::pays_off(count, bank)) {
            let values = self.exact_energy(starts, bank)?.add_scalar(-self.delta)?.to_vec_f32()?;
            return Thresholds::exact(starts.clone(), &values).map(Some);
        }
        // Bounds only; a threshold is made exact when a verdict needs it.
        let screen = Screen::new(starts, bank, self.kappa)?;
        let variances = screen.variances(starts)?;
        let classes = bank.num_classes();
        let bounds = (0..count)
            .map(|i| {
                let (lo, hi) = screen.bounds(i, Some(&variances[i * classes..(i + 1) * classes]));
                (lo - self.delta, hi - self.delta)
            })
            .collect();
        Thresholds::bounded(starts.clone(), bounds).map(Some)
    }

    fn admits(
        &self,
        candidates: &Tensor,
        starts: &[usize],
        thresholds: &mut Thresholds,
        bank: &ClassBank,
    ) -> Result<Admission> {
        check_starts(candidates, starts, thresholds)?;
        let count = starts.len();
        let mut verdicts: Vec<Option<bool>> = vec![None; count];
        let mut refined_starts = 0;
        if self.screen && super::screen::pays_off(count, bank) {
            let screen = Screen::new(candidates, bank, self.kappa)?;
            for (i, v) in verdicts.iter_mut().enumerate() {
                *v = verdict(screen.bounds(i, None), thresholds.bounds(starts[i]));
            }
            let undecided = undecided(&verdicts);
            if !undecided.is_empty() {
                let classes = bank.num_classes();
                let variances = screen.variances(&candidates.gather_rows(&undecided)?)?;
                let tight: Vec<(f64, f64)> = (0..undecided.len())
                    .map(|j| screen.bounds(undecided[j], Some(&variances[j * classes..(j + 1) * classes])))
                    .collect();
                let decide = |verdicts: &mut [Option<bool>], thresholds: &Thresholds| {
                    for (&i, &bounds) in undecided.iter().zip(&tight) {
                        if verdicts[i].is_none() {
                            verdicts[i] = verdict(bounds, thresholds.bounds(starts[i]));
                        }
                    }
                };
                decide(&mut verdicts, thresholds);
                // Exact thresholds for what is still open, then the tight bounds again.
                let open: Vec<usize> =
                    undecided.iter().filter(|&&i| verdicts[i].is_none()).map(|&i| starts[i]).collect();
                refined_starts = self.make_exact(thresholds, &open, bank)?;
                decide(&mut verdicts, thresholds);
            }
        }
        let undecided = undecided(&verdicts);
        if !undecided.is_empty() {
            let open: Vec<usize> = undecided.iter().map(|&i| starts[i]).collect();
            refined_starts += self.make_exact(thresholds, &open, bank)?;
            let energy = self.exact_energy(&candidates.gather_rows(&undecided)?, bank)?.to_vec_f32()?;
            for (&i, &e) in undecided.iter().zip(&energy) {
                verdicts[i] = Some(thresholds.exact_value(starts[i]).is_some_and(|t| e > t));
            }
        }
        let mask: Vec<f32> = verdicts.iter().map(|v| if *v == Some(true) { 1.0 } else { 0.0 }).collect();
        Ok(Admission {
            mask: candidates.backend().from_f32(&mask, &[count])?,
            exact_evaluations: undecided.len() + refined_starts,
            refined_starts,
        })
    }
}

fn undecided(verdicts: &[Option<bool>]) -> Vec<usize> {
    (0..verdicts.len()).filter(|&i| verdicts[i].is_none()).collect()
}
