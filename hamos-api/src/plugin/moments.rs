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
    /// The covariance `S_c = mean_i (x_i - m_c)(x_i - m_c)^T` of each class as the weights of
    /// the quadratic form on the upper triangle: `S_aa` and `2 S_ab` for `a < b`, in the order of
    /// [`upper_pairs`], `[d (d + 1) / 2, c]`.
    pub covariance_terms: Tensor,
    /// `max_i |x_i - m_c|` per class, rounded up against `f32` cancellation (0 when empty).
    pub radii: Vec<f32>,
    /// An upper bound on the largest eigenvalue of each class covariance, `min(trace, Frobenius
    /// norm)`: `z^T S_c z <= variance_bounds[c] |z|^2` without the quadratic form.
    pub variance_bounds: Vec<f32>,
    /// The `I64` index tensors of [`upper_pairs`] for the bank's dimension (built once, read by
    /// every [`ClassMoments::quadratic_forms`]).
    pair_indices: (Tensor, Tensor),
}

/// The index pairs `(a, b)`, `a <= b < dim`, row by row of the upper triangle.
pub fn upper_pairs(dim: usize) -> (Vec<i64>, Vec<i64>) {
    (0..dim).flat_map(|a| (a..dim).map(move |b| (a as i64, b as i64))).unzip()
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

        // S_c = G_c / n_c - m_c m_c^T on the upper triangle, class by class (contiguous rows of
        // the Gram product), then reordered into the `[pairs, c]` terms.
        let gram = rows.class_gram()?.to_vec_f32()?;
        let pairs = dim * (dim + 1) / 2;
        let mut covariance = vec![0.0f32; classes * pairs];
        let mut variance_bounds = Vec::with_capacity(classes);
        for (c, out) in covariance.chunks_exact_mut(pairs.max(1)).enumerate().take(classes) {
            let (mean, n) = (&host_means[c * dim..(c + 1) * dim], counts[c].max(1) as f32);
            let (mut trace, mut frobenius_sq, mut p) = (0.0f64, 0.0f64, 0);
            for a in 0..dim {
                let gram_row = &gram[(c * dim + a) * dim + a..(c * dim + a + 1) * dim];
                let entries = &mut out[p..p + dim - a];
                for ((entry, &g), &mb) in entries.iter_mut().zip(gram_row).zip(&mean[a..]) {
                    *entry = g / n - mean[a] * mb;
                }
                let diagonal = f64::from(entries[0]);
                let off_sq: f64 = entries[1..].iter().map(|&e| f64::from(e) * f64::from(e)).sum();
                trace += diagonal;
                frobenius_sq += diagonal * diagonal + 2.0 * off_sq;
                p += dim - a;
            }
            // Rounded up past the f32 rounding of the covariance itself.
            variance_bounds.push((trace.min(frobenius_sq.sqrt()).max(0.0) * (1.0 + 1e-4) + 1e-7) as f32);
        }
        // 1 on the diagonal, 2 off it, in the order of `upper_pairs` (as `covariance` is).
        let weights: Vec<f32> =
            (0..dim).flat_map(|a| (a..dim).map(move |b| if a == b { 1.0 } else { 2.0 })).collect();
        let mut terms = vec![0.0f32; pairs * classes];
        // Blocks of pairs keep both the reads (one class row) and the writes near the caches.
        for block in (0..pairs).step_by(256) {
            let end = (block + 256).min(pairs);
            for c in 0..classes {
                for p in block..end {
                    terms[p * classes + c] = weights[p] * covariance[c * pairs + p];
                }
            }
        }
        let covariance_terms = backend.from_f32(&terms, &[pairs, classes])?;
        let radii = farthest_distances(bank, &means, &host_means)?;
        let (first, other) = upper_pairs(dim);
        let pair_indices = (backend.from_i64(&first, &[pairs])?, backend.from_i64(&other, &[pairs])?);
        Ok(ClassMoments { means, covariance_terms, radii, variance_bounds, pair_indices })
    }

    /// `z^T S_c z` for every row of `z` `[m, d]` and class `c`, `[m, c]`: the products
    /// `z_a z_b` (`a <= b`) against [`ClassMoments::covariance_terms`].
    pub fn quadratic_forms(&self, z: &Tensor) -> Result<Tensor> {
        let (rows, dim) = (z.dim("quadratic_forms", 0)?, z.dim("quadratic_forms", 1)?);
        let expected = self.means.dim("quadratic_forms", 1)?;
        if dim != expected {
            return Err(crate::error::Error::shape(
                "quadratic_forms",
                format!("rows of dimension {dim} for moments of dimension {expected}"),
            ));
        }
        // `[d, m]`, contiguous, so the gathers below copy whole rows.
        let columns = z.t()?.reshape(&[dim, rows])?;
        let first = columns.index_select(0, &self.pair_indices.0)?;
        let other = columns.index_select(0, &self.pair_indices.1)?;
        first.mul(&other)?.t()?.matmul(&self.covariance_terms)
    }
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
