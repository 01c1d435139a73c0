//! Per-class moments of a [`ClassBank`]: mean, covariance and radius. They bound kernel
//! densities without touching every row (the vMF barrier screens proposals with them).

use super::ClassBank;
use crate::error::Result;
use crate::tensor::Tensor;

/// Moments of each class's valid rows, computed once per bank ([`ClassBank::moments`]).
#[derive(Debug, Clone)]
pub struct ClassMoments {
    /// Class means `m_c`, `[c, d]` (not normalized).
    pub means: Tensor,
    /// The covariances `S_c = mean_i (x_i - m_c)(x_i - m_c)^T` side by side, `[d, c d]`: entry
    /// `(a, c d + b)` is `S_c[a][b]`, so one product `z S` gives `S_c z` for every class.
    pub covariance: Tensor,
    /// `max_i |x_i - m_c|` per class, rounded up against `f32` cancellation (0 when empty).
    pub radii: Vec<f32>,
    /// An upper bound on the largest eigenvalue of each class covariance, `min(trace, Frobenius
    /// norm)`: `z^T S_c z <= variance_bounds[c] |z|^2` without the quadratic form.
    pub variance_bounds: Vec<f32>,
}

impl ClassMoments {
    /// The moments of `bank`: `c` products of `d x s` by `s x d` (`c s d^2` multiply-adds).
    pub fn of(bank: &ClassBank) -> Result<Self> {
        let (classes, dim) = (bank.num_classes(), bank.dim());
        let rows = bank.embeddings();
        let backend = rows.backend();
        let counts = bank.counts();
        let inverse: Vec<f32> = counts.iter().map(|&n| 1.0 / n.max(1) as f32).collect();
        let means = bank.class_sums()?.mul(&backend.from_f32(&inverse, &[classes, 1])?)?; // [c, d]
        let host_means = means.to_vec_f32()?;

        // S_c = G_c / n_c - m_c m_c^T, one Gram row at a time into row `a` of the `[d, c d]`
        // layout.
        let gram = rows.class_gram()?.to_vec_f32()?; // [c, d, d]
        let mut covariance = vec![0.0f32; dim * classes * dim];
        let mut variance_bounds = Vec::with_capacity(classes);
        for c in 0..classes {
            let (mean, inverse) = (&host_means[c * dim..(c + 1) * dim], inverse[c]);
            let (mut trace, mut frobenius_sq) = (0.0f64, 0.0f64);
            for a in 0..dim {
                let gram_row = &gram[(c * dim + a) * dim..(c * dim + a + 1) * dim];
                let out = &mut covariance[(a * classes + c) * dim..(a * classes + c + 1) * dim];
                for ((entry, &g), &mb) in out.iter_mut().zip(gram_row).zip(mean) {
                    *entry = g * inverse - mean[a] * mb;
                }
                trace += f64::from(out[a]);
                frobenius_sq += sum_of_squares(out);
            }
            // Rounded up past the f32 rounding of the covariance itself.
            variance_bounds.push((trace.min(frobenius_sq.sqrt()).max(0.0) * (1.0 + 1e-4) + 1e-7) as f32);
        }
        let covariance = backend.from_f32(&covariance, &[dim, classes * dim])?;
        let radii = farthest_distances(bank, &means, &host_means)?;
        Ok(ClassMoments { means, covariance, radii, variance_bounds })
    }

    /// `z^T S_c z` for every row of `z` `[m, d]` and class `c`, `[m, c]`: one product `z S`
    /// (`m c d^2` multiply-adds), then each class block dotted with its row of `z`.
    pub fn quadratic_forms(&self, z: &Tensor) -> Result<Tensor> {
        let (rows, dim) = (z.dim("quadratic_forms", 0)?, z.dim("quadratic_forms", 1)?);
        let (classes, expected) =
            (self.means.dim("quadratic_forms", 0)?, self.means.dim("quadratic_forms", 1)?);
        if dim != expected {
            return Err(crate::error::Error::shape(
                "quadratic_forms",
                format!("rows of dimension {dim} for moments of dimension {expected}"),
            ));
        }
        let products = z.matmul(&self.covariance)?.reshape(&[rows, classes, dim])?; // S_c z
        products.mul(&z.reshape(&[rows, 1, dim])?)?.sum(2, false)
    }
}

/// `sum_i x_i^2` in `f64`, in eight partial sums (a single running sum waits out the add
/// latency at every element).
fn sum_of_squares(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(x) * f64::from(x);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `max_i |x_i - m_c|` over each class's valid rows, padded against rounding (0 when empty):
/// the farthest row from the mean is the `n_c`-th nearest ([`Tensor::class_kth_nearest`], `f32`
/// distances with near-ties settled in `f64`), and its distance is taken in `f64`.
fn farthest_distances(bank: &ClassBank, means: &Tensor, host_means: &[f32]) -> Result<Vec<f32>> {
    let (classes, capacity, dim) = (bank.num_classes(), bank.capacity(), bank.dim());
    let filled: Vec<usize> = (0..classes).filter(|&c| bank.counts()[c] > 0).collect();
    let mut radii = vec![0.0f32; classes];
    if filled.is_empty() {
        return Ok(radii);
    }
    let targets: Vec<(usize, usize)> = filled.iter().map(|&c| (c, c)).collect();
    let rows = means.class_kth_nearest(bank.embeddings(), bank.counts(), &targets, capacity)?;
    let farthest =
        bank.embeddings().reshape(&[classes * capacity, dim])?.index_select(0, &rows)?.to_vec_f32()?;
    for (&c, row) in filled.iter().zip(farthest.chunks_exact(dim.max(1))) {
        let mean = &host_means[c * dim..(c + 1) * dim];
        let sq: f64 = row.iter().zip(mean).map(|(&x, &m)| (f64::from(x) - f64::from(m)).powi(2)).sum();
        // The mean itself carries f32 rounding (~1e-7 of |x|^2): pad the square by 1e-6.
        radii[c] = (sq + 1e-6).sqrt() as f32;
    }
    Ok(radii)
}
