//! Screening for the vMF barrier: bounds on `E(z) = -log max_c P_c(z)` from the class moments
//! (mean `m_c`, covariance `S_c`, radius `r_c`, see [`hamos_api::ClassMoments`]), at `c d^2`
//! multiply-adds per proposal instead of the exact density's `c s d`.
//!
//! For class `c` let `delta_i = z.(x_i - m_c)`: its mean is 0, `|delta_i| <= R = |z| r_c` and
//! its mean square is `v = z^T S_c z`. With `phi(y) = (e^y - 1 - y) / y^2`, increasing and
//! `phi(0) = 1/2`, the identity `e^y = 1 + y + y^2 phi(y)` gives
//! `1 + kappa^2 v phi(-kappa R) <= mean_i e^(kappa delta_i) <= 1 + kappa^2 v phi(kappa R)`,
//! so `log p_c = kappa z.m_c + log mean_i e^(kappa delta_i)` lies in `[lo_c, hi_c]`, and
//! `logsumexp(lo) - max(hi) <= E(z) <= logsumexp(hi) - max(lo)`. A proposal whose interval
//! clears the threshold by a margin (far above `f32` rounding) is decided; the rest get the
//! exact density.

use hamos_api::{ClassBank, Result, Tensor};

/// Margin, relative to `1 + |t|`, by which bounds must clear a threshold to decide.
const DECISION_MARGIN: f64 = 1e-3;

/// Whether screening `candidates` proposals costs less than the exact density: per class, exact
/// is `s d` per proposal, screening `d^2` per proposal plus `s d^2` once per bank for the
/// moments (shared by the rounds that follow, so counted half).
pub(crate) fn pays_off(candidates: usize, bank: &ClassBank) -> bool {
    let (s, d) = (bank.capacity(), bank.dim());
    s > d && 2 * candidates * (s - d) > s * d
}

/// `[lo, hi]` bounds on `E(z)` for every row of unit-norm `z` `[m, d]`, at bandwidth `kappa`.
pub(crate) fn energy_bounds(z: &Tensor, bank: &ClassBank, kappa: f64) -> Result<Vec<(f64, f64)>> {
    let moments = bank.moments()?;
    let (rows, classes) = (z.dim("vmf_kde screen", 0)?, bank.num_classes());
    let mean_dots = z.matmul(&moments.means.t()?)?.to_vec_f32()?;
    let variances = moments.quadratic_forms(z)?.to_vec_f32()?;
    let norms = z.norm(1, false)?.to_vec_f32()?;
    let kappa_sq = kappa * kappa;
    let mut lower = vec![0.0f64; classes];
    let mut upper = vec![0.0f64; classes];
    Ok((0..rows)
        .map(|j| {
            for c in 0..classes {
                let at = j * classes + c;
                let base = kappa * f64::from(mean_dots[at]);
                let variance = f64::from(variances[at]).max(0.0);
                let reach = kappa * f64::from(norms[j]) * f64::from(moments.radii[c]);
                lower[c] = base + (kappa_sq * variance * phi(-reach)).ln_1p();
                upper[c] = base + (kappa_sq * variance * phi(reach)).ln_1p();
            }
            (logsumexp(&lower) - max(&upper), logsumexp(&upper) - max(&lower))
        })
        .collect())
}

/// `Some(admit)` when `bounds` decide `E > threshold`, `None` when only the exact value can.
pub(crate) fn verdict(bounds: (f64, f64), threshold: f64) -> Option<bool> {
    let margin = DECISION_MARGIN * (1.0 + threshold.abs());
    if bounds.0 > threshold + margin {
        Some(true)
    } else if bounds.1 <= threshold - margin {
        Some(false)
    } else {
        None
    }
}

/// `(e^y - 1 - y) / y^2`, by its series near 0.
fn phi(y: f64) -> f64 {
    if y.abs() < 1e-3 {
        0.5 + y / 6.0 + y * y / 24.0
    } else {
        (y.exp_m1() - y) / (y * y)
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn logsumexp(values: &[f64]) -> f64 {
    let top = max(values);
    if !top.is_finite() {
        return top;
    }
    top + values.iter().map(|v| (v - top).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_is_continuous_and_increasing() {
        let points: Vec<f64> = (-400..=400).map(|i| f64::from(i) * 0.01).collect();
        let values: Vec<f64> = points.iter().map(|&y| phi(y)).collect();
        assert!(values.windows(2).all(|w| w[1] > w[0]), "phi must increase");
        assert!((phi(1e-3 - 1e-12) - phi(1e-3 + 1e-12)).abs() < 1e-9, "no jump at the series switch");
        for y in [-3.0f64, -0.5, 0.7, 2.0] {
            let direct = y.exp();
            assert!((1.0 + y + y * y * phi(y) - direct).abs() < 1e-12 * direct.max(1.0));
        }
    }

    #[test]
    fn verdicts_need_the_margin() {
        assert_eq!(verdict((1.2, 1.5), 1.0), Some(true));
        assert_eq!(verdict((0.2, 0.5), 1.0), Some(false));
        assert_eq!(verdict((0.9, 1.1), 1.0), None);
        assert_eq!(verdict((1.0005, 1.1), 1.0), None, "within the margin");
    }
}
