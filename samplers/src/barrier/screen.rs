//! Screening for the vMF barrier: bounds on `E(z) = -log max_c P_c(z)` from the class moments
//! (mean `m_c`, covariance `S_c`, radius `r_c`, see [`hamos_api::ClassMoments`]), at `c d^2`
//! multiply-adds per proposal instead of the exact density's `c s d`.
//!
//! For class `c` let `delta_i = z.(x_i - m_c)`: its mean is 0, `|delta_i| <= R = |z| r_c` and
//! its mean square is `v = z^T S_c z`. With `phi(y) = (e^y - 1 - y) / y^2`, increasing and
//! `phi(0) = 1/2`, the identity `e^y = 1 + y + y^2 phi(y)` gives
//! `1 + kappa^2 v phi(-kappa R) <= mean_i e^(kappa delta_i) <= 1 + kappa^2 v phi(kappa R)`,
//! so `log p_c = kappa z.m_c + log mean_i e^(kappa delta_i)` lies in `[lo_c, hi_c]`, and
//! `logsumexp(lo) - max(hi) <= E(z) <= logsumexp(hi) - max(lo)`. The first tier replaces `v` by
//! its range `[0, lambda_c |z|^2]` (`lambda_c` bounds the covariance's largest eigenvalue), so it
//! needs only the mean dots. Thresholds are screened the same way (they are `E(b) - delta`). A
//! proposal whose interval clears its threshold's interval by a margin (far above `f32`
//! rounding) is decided; the rest get the exact threshold, then the exact density.

use hamos_api::{ClassBank, ClassMoments, Result, Tensor};

/// Margin, relative to `1 + |t|`, by which bounds must clear a threshold to decide.
const DECISION_MARGIN: f64 = 1e-3;

/// Proposals a run checks per distinct chain start, about: two chains share a start and each
/// proposes once per round (five by default).
const CHECKS_PER_START: usize = 8;

/// Whether screening is expected to cost less than the exact density when a call brings
/// `candidates` points. The moments cost about `d / 2` exact evaluations per class (half a Gram
/// product, `s d^2 / 2`, against `s d` each), once per bank, and then every check costs about
/// `d` instead of `s d`; a run checks about [`CHECKS_PER_START`] proposals per start, and the
/// first call (the thresholds) brings the starts. Free once the bank has its moments.
pub(crate) fn pays_off(candidates: usize, bank: &ClassBank) -> bool {
    let (s, d) = (bank.capacity(), bank.dim());
    bank.has_moments() || (s > d && 2 * CHECKS_PER_START * candidates >= d)
}

/// Bounds on `E(z)` for the rows of unit-norm `z` `[m, d]`, in two tiers: the first from the
/// class means alone (`0 <= v <= variance_bounds[c] |z|^2`, `c d` multiply-adds per row), the
/// second with the exact quadratic forms `v = z^T S_c z` (`c d^2 / 2`), for rows the first
/// leaves undecided.
pub(crate) struct Screen<'a> {
    moments: &'a ClassMoments,
    kappa: f64,
    classes: usize,
    mean_dots: Vec<f32>,
    norms: Vec<f32>,
}

impl<'a> Screen<'a> {
    /// The first tier's inputs for every row of `z`.
    pub fn new(z: &Tensor, bank: &'a ClassBank, kappa: f64) -> Result<Self> {
        let moments = bank.moments()?;
        Ok(Screen {
            moments,
            kappa,
            classes: bank.num_classes(),
            mean_dots: z.matmul(&moments.means.t()?)?.to_vec_f32()?,
            norms: z.norm(1, false)?.to_vec_f32()?,
        })
    }

    /// `z^T S_c z` `[m * c]` for the rows of `z` `[m, d]` (the second tier's input).
    pub fn variances(&self, z: &Tensor) -> Result<Vec<f32>> {
        self.moments.quadratic_forms(z)?.to_vec_f32()
    }

    /// `[lo, hi]` bounds on `E(z)` for row `row`, from its quadratic forms when given (one per
    /// class), else from the variance bounds.
    pub fn bounds(&self, row: usize, variances: Option<&[f32]>) -> (f64, f64) {
        let (lower, upper) = self.class_bounds(row, variances);
        (logsumexp(&lower) - max(&upper), logsumexp(&upper) - max(&lower))
    }

    /// Per class `[lo_c]` and `[hi_c]` bounds on `log p_c(z)` (up to the shared normalizer) for
    /// row `row`, from its quadratic forms when given, else from the variance bounds.
    pub fn class_bounds(&self, row: usize, variances: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
        let kappa_sq = self.kappa * self.kappa;
        let norm = f64::from(self.norms[row]);
        let mut lower = vec![0.0f64; self.classes];
        let mut upper = vec![0.0f64; self.classes];
        for c in 0..self.classes {
            let base = self.kappa * f64::from(self.mean_dots[row * self.classes + c]);
            let (least, most) = match variances {
                Some(v) => {
                    let v = f64::from(v[c]).max(0.0);
                    (v, v)
                }
                None => (0.0, f64::from(self.moments.variance_bounds[c]) * norm * norm),
            };
            let reach = self.kappa * norm * f64::from(self.moments.radii[c]);
            lower[c] = base + (kappa_sq * least * phi(-reach)).ln_1p();
            upper[c] = base + (kappa_sq * most * phi(reach)).ln_1p();
        }
        (lower, upper)
    }
}

/// `Some(admit)` when bounds on the energy decide `E > t` for every `t` within the threshold's
/// bounds, `None` when only tighter values can.
pub(crate) fn verdict(energy: (f64, f64), threshold: (f64, f64)) -> Option<bool> {
    let margin = DECISION_MARGIN * (1.0 + threshold.0.abs().max(threshold.1.abs()));
    if energy.0 > threshold.1 + margin {
        Some(true)
    } else if energy.1 <= threshold.0 - margin {
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
        assert_eq!(verdict((1.2, 1.5), (1.0, 1.0)), Some(true));
        assert_eq!(verdict((0.2, 0.5), (1.0, 1.0)), Some(false));
        assert_eq!(verdict((0.9, 1.1), (1.0, 1.0)), None);
        assert_eq!(verdict((1.0005, 1.1), (1.0, 1.0)), None, "within the margin");
        assert_eq!(verdict((1.2, 1.5), (0.9, 1.3)), None, "the threshold's bounds overlap");
        assert_eq!(verdict((1.4, 1.5), (0.9, 1.3)), Some(true));
        assert_eq!(verdict((0.1, 0.5), (0.9, 1.3)), Some(false));
        assert_eq!(verdict((1.4, 1.5), (f64::NEG_INFINITY, f64::INFINITY)), None, "unknown threshold");
    }
}
