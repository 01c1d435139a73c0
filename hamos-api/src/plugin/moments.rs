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
}

/// The index pairs `(a, b)`, `a <= b < dim`, row by row of the upper triangle.
pub fn upper_pairs(dim: usize) -> (Vec<i64>, Vec<i64>) {
    (0..dim).flat_map(|a| (a..dim).map(move |b| (a as i64, b as i64))).unzip()
}

impl ClassMoments {
    /// The moments of `bank`: `c` products of `d x s` by `s x d` (`c s d^2` multiply-adds).
    pub fn of(bank: &ClassBank) -> Result<Self> {
        let (classes, capacity, dim) = (bank.num_classes(), bank.capacity(), bank.dim());
        let rows = bank.embeddings();
        let backend = rows.backend();
        let inverse: Vec<f32> = bank.counts().iter().map(|&n| 1.0 / n.max(1) as f32).collect();
        let inverse = backend.from_f32(&inverse, &[classes, 1, 1])?;
        // Padding rows are zero, so sums over all rows see only valid ones (a product with a
        // row of ones: reductions over a middle dim are slow on some backends).
        let ones = backend.full(1.0, &[classes, 1, capacity])?;
        let means = ones.matmul(rows)?.mul(&inverse)?; // [c, 1, d]

        // S_c = G_c / n_c - m_c m_c^T, formed on the host from the Gram matrices straight into
        // the upper-triangle terms: no [c, d, d] intermediates beyond the Gram product.
        let gram = rows.class_gram()?.to_vec_f32()?;
        let host_means = means.to_vec_f32()?;
        let counts = bank.counts();
        let covariance = |c: usize, a: usize, b: usize| -> f32 {
            let mean = &host_means[c * dim..(c + 1) * dim];
            gram[(c * dim + a) * dim + b] / counts[c].max(1) as f32 - mean[a] * mean[b]
        };
        let (first, other) = upper_pairs(dim);
        let pairs = first.len();
        let mut terms = vec![0.0f32; pairs * classes];
        // Blocks of pairs keep both the reads (one class row) and the writes near the caches.
        for block in (0..pairs).step_by(256) {
            let end = (block + 256).min(pairs);
            for c in 0..classes {
                for p in block..end {
                    let (a, b) = (first[p] as usize, other[p] as usize);
                    let weight = if a == b { 1.0 } else { 2.0 };
                    terms[p * classes + c] = weight * covariance(c, a, b);
                }
            }
        }
        // Trace and Frobenius norm from the terms: S_aa, and 2 S_ab counted twice as (2 S_ab)^2 / 2.
        let variance_bounds = (0..classes)
            .map(|c| {
                let (mut trace, mut frobenius_sq) = (0.0f64, 0.0f64);
                for p in 0..pairs {
                    let t = f64::from(terms[p * classes + c]);
                    if first[p] == other[p] {
                        trace += t;
                        frobenius_sq += t * t;
                    } else {
                        frobenius_sq += t * t / 2.0;
                    }
                }
                // Rounded up past the f32 rounding of the covariance itself.
                (trace.min(frobenius_sq.sqrt()).max(0.0) * (1.0 + 1e-4) + 1e-7) as f32
            })
            .collect();
        let covariance_terms = backend.from_f32(&terms, &[pairs, classes])?;
        // |x - m|^2 = |x|^2 - 2 x.m + |m|^2 over valid rows.
        let cross = rows.matmul(&means.transpose(1, 2)?)?.reshape(&[classes, 1, capacity])?;
        let mean_sq = means.sqr()?.sum(2, true)?;
        let deviation = bank.row_sq_norms().sub(&cross.scale(2.0)?)?.add(&mean_sq)?;
        let valid = bank.valid_mask()?.reshape(&[classes, 1, capacity])?;
        let deviation = deviation.mul(&valid)?.max(2, false)?.to_vec_f32()?;
        // The expansion cancels: pad the squared radius by its rounding (~1e-7 of |x|^2).
        let radii = deviation.iter().map(|&r2| (r2.max(0.0) + 1e-6).sqrt()).collect();
        Ok(ClassMoments { means: means.reshape(&[classes, dim])?, covariance_terms, radii, variance_bounds })
    }

    /// `z^T S_c z` for every row of `z` `[m, d]` and class `c`, `[m, c]`: the products
    /// `z_a z_b` (`a <= b`) against [`ClassMoments::covariance_terms`].
    pub fn quadratic_forms(&self, z: &Tensor) -> Result<Tensor> {
        let backend = z.backend();
        let (rows, dim) = (z.dim("quadratic_forms", 0)?, z.dim("quadratic_forms", 1)?);
        let (first, other) = upper_pairs(dim);
        // `[d, m]`, contiguous, so the gathers below copy whole rows.
        let columns = z.t()?.reshape(&[dim, rows])?;
        let first = columns.index_select(0, &backend.from_i64(&first, &[first.len()])?)?;
        let other = columns.index_select(0, &backend.from_i64(&other, &[other.len()])?)?;
        first.mul(&other)?.t()?.matmul(&self.covariance_terms)
    }
}
