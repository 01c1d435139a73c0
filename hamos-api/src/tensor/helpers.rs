//! Provided helpers: built only on the required ops, so every backend gets them for free and
//! gradients flow through them.

use super::Tensor;
use crate::error::{Error, Result};

impl Tensor {
    /// Sum of all elements, shape `[1]`.
    pub fn sum_all(&self) -> Result<Tensor> {
        self.reshape(&[self.elem_count()])?.sum(0, true)
    }

    /// Mean of all elements, shape `[1]`.
    pub fn mean_all(&self) -> Result<Tensor> {
        let n = self.elem_count();
        if n == 0 {
            return Err(Error::shape("mean_all", "empty tensor"));
        }
        self.sum_all()?.scale(1.0 / n as f64)
    }

    /// Mean along `dim`.
    pub fn mean(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        let n = self.dim("mean", dim)?;
        if n == 0 {
            return Err(Error::shape("mean", format!("dim {dim} is empty")));
        }
        self.sum(dim, keepdim)?.scale(1.0 / n as f64)
    }

    /// Euclidean norm along `dim`.
    pub fn norm(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.sqr()?.sum(dim, keepdim)?.sqrt()
    }

    /// Scales slices along `dim` to unit Euclidean norm; a zero slice stays zero (the norm is
    /// floored at 1e-12, as in PyTorch's `F.normalize`).
    pub fn l2_normalize(&self, dim: usize) -> Result<Tensor> {
        let norm = self.norm(dim, true)?.clamp(1e-12, f64::INFINITY)?;
        self.div(&norm)
    }

    /// `log(sum(exp(x)))` along `dim`, stable for large inputs.
    pub fn logsumexp(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        // The shift is detached: it cancels analytically, and a detached max keeps the
        // gradient a clean softmax instead of routing through the argmax.
        let shift = self.max(dim, true)?.detach()?;
        let shift = shift.where_mask_finite()?;
        let summed = self.sub(&shift)?.exp()?.sum(dim, true)?.log()?.add(&shift)?;
        if keepdim {
            Ok(summed)
        } else {
            let mut dims = summed.dims();
            dims.remove(dim);
            summed.reshape(&dims)
        }
    }

    /// Replaces infinite entries (a max over all `-inf`) by 0, so shifts stay finite.
    fn where_mask_finite(&self) -> Result<Tensor> {
        let big = self.scalar_like(f32::MAX)?;
        let finite = self.abs()?.le(&big)?;
        finite.where_mask(self, &self.full_like(0.0)?)
    }

    /// `x - logsumexp(x)` along `dim`.
    pub fn log_softmax(&self, dim: usize) -> Result<Tensor> {
        self.sub(&self.logsumexp(dim, true)?)
    }

    /// Softmax along `dim`.
    pub fn softmax(&self, dim: usize) -> Result<Tensor> {
        self.log_softmax(dim)?.exp()
    }

    /// Squared Euclidean distances between the rows of `self` `[m, d]` and `other` `[n, d]`,
    /// shape `[m, n]`, clamped at 0 against rounding.
    pub fn pairwise_sq_dists(&self, other: &Tensor) -> Result<Tensor> {
        check_rows("pairwise_sq_dists", self, other)?;
        let self_sq = self.sqr()?.sum(1, true)?;
        let other_sq = other.sqr()?.sum(1, true)?.t()?;
        let cross = self.matmul(&other.t()?)?.scale(-2.0)?;
        cross.add(&self_sq)?.add(&other_sq)?.clamp(0.0, f64::INFINITY)
    }

    /// Cosine similarity between the rows of `self` `[m, d]` and `other` `[n, d]`, `[m, n]`.
    pub fn cosine_similarity(&self, other: &Tensor) -> Result<Tensor> {
        check_rows("cosine_similarity", self, other)?;
        self.l2_normalize(1)?.matmul(&other.l2_normalize(1)?.t()?)
    }

    /// For queries `self` `[m, d]` and a class bank `[c, s, d]` whose class `i` holds
    /// `counts[i]` valid rows: `out[j, i] = logsumexp over valid rows x of scale * (self_j . x)`,
    /// shape `[m, c]` (a class without rows gives `-inf`). This is the vMF kernel density of
    /// Eqn 11 in log space, up to constants.
    ///
    /// Backends may fuse it ([`BankKernels::class_logsumexp`](super::BankKernels)) to avoid the
    /// `[m, c * s]` intermediate; fused versions carry no gradient, the generic one
    /// ([`generic_class_logsumexp`](super::generic_class_logsumexp)) does.
    pub fn class_logsumexp(&self, bank: &Tensor, counts: &[usize], scale: f64) -> Result<Tensor> {
        super::neighbours::class_bank_shape("class_logsumexp", self, bank, counts)?;
        self.backend().bank_kernels().class_logsumexp(self, bank, counts, scale)
    }

    /// For a class bank `[c, s, d]`, each class's Gram matrix `X_c^T X_c` over its `s` rows,
    /// `[c, d, d]` (the second moments of the vMF barrier's screening; padding rows are zero and
    /// add nothing).
    ///
    /// Provided: a batched matrix product; backends may fuse it
    /// ([`BankKernels::class_gram`](super::BankKernels)). No gradient needed.
    pub fn class_gram(&self) -> Result<Tensor> {
        if self.rank() != 3 {
            return Err(Error::shape("class_gram", format!("needs a [c, s, d] bank, got {:?}", self.dims())));
        }
        self.backend().bank_kernels().class_gram(self)
    }

    /// The rows `rows` (host indices, in that order, repeats allowed) of `self` along dim 0:
    /// [`Tensor::index_select`] with the index tensor built from `rows`.
    pub fn gather_rows(&self, rows: &[usize]) -> Result<Tensor> {
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        self.index_select(0, &self.backend().from_i64(&index, &[index.len()])?)
    }

    /// The values of rows `rows` (host indices, in that order, repeats allowed) of a `[n, d]`
    /// `self` on the host, `rows.len() * d` of them: [`Tensor::gather_rows`] and a download,
    /// or a backend's direct copy where its storage is host memory
    /// ([`BankKernels::rows_to_host`](super::BankKernels)).
    pub fn rows_to_host(&self, rows: &[usize]) -> Result<Vec<f32>> {
        let dims = self.dims();
        let &[n, _] = &dims[..] else {
            return Err(Error::shape("rows_to_host", format!("needs a [n, d] tensor, got {dims:?}")));
        };
        if let Some(&row) = rows.iter().find(|&&row| row >= n) {
            return Err(Error::shape("rows_to_host", format!("row {row} out of range for {n} rows")));
        }
        self.backend().bank_kernels().rows_to_host(self, rows)
    }

    /// Row-wise dot products of two `[m, d]` tensors, shape `[m, 1]`.
    pub fn row_dot(&self, other: &Tensor) -> Result<Tensor> {
        if self.dims() != other.dims() || self.rank() != 2 {
            return Err(Error::shape(
                "row_dot",
                format!("needs two equal rank-2 shapes, got {:?} and {:?}", self.dims(), other.dims()),
            ));
        }
        self.mul(other)?.sum(1, true)
    }
}

/// Row-major `[counts.len(), capacity]` mask: 1 for the first `counts[i]` slots of row `i`, 0 after.
pub(crate) fn valid_row_mask(counts: &[usize], capacity: usize) -> Vec<f32> {
    counts.iter().flat_map(|&n| (0..capacity).map(move |slot| if slot < n { 1.0 } else { 0.0 })).collect()
}

fn check_rows(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    let (da, db) = (a.dims(), b.dims());
    match (&da[..], &db[..]) {
        ([_, x], [_, y]) if x == y => Ok(()),
        _ => Err(Error::shape(op, format!("needs [m, d] and [n, d], got {da:?} and {db:?}"))),
    }
}
