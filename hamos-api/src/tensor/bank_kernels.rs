//! The class-bank kernels of outlier synthesis, an extension a backend may implement (burn's
//! backend extensions are the model): the core [`TensorImpl`](super::TensorImpl) stays generic,
//! and a backend with faster versions of these four ops returns them from
//! [`Backend::bank_kernels`](crate::Backend::bank_kernels). Every method defaults to the generic
//! composition of core ops (the `generic_*` functions here), so an implementation overrides
//! only what it fuses and may fall back to the generic version where it does not (off the CPU,
//! say).
//!
//! The [`Tensor`] methods of the same names validate their arguments and then call the kernels
//! of the tensor's backend; kernels receive validated arguments (shapes and counts checked,
//! rows in range) of that backend.

use super::helpers::valid_row_mask;
use super::Tensor;
use crate::error::Result;

/// Class-bank kernels a backend may fuse: see the [module docs](self).
pub trait BankKernels: Send + Sync {
    /// [`Tensor::class_logsumexp`] of `queries` `[m, d]` against `bank` `[c, s, d]` with
    /// `counts[i]` valid rows in class `i`. Fused versions need not track gradients.
    fn class_logsumexp(
        &self,
        queries: &Tensor,
        bank: &Tensor,
        counts: &[usize],
        scale: f64,
    ) -> Result<Tensor> {
        generic_class_logsumexp(queries, bank, counts, scale)
    }

    /// [`Tensor::class_gram`] of a `[c, s, d]` bank.
    fn class_gram(&self, bank: &Tensor) -> Result<Tensor> {
        generic_class_gram(bank)
    }

    /// [`Tensor::rows_to_host`]: rows `rows` (in range) of a `[n, d]` tensor, on the host.
    fn rows_to_host(&self, tensor: &Tensor, rows: &[usize]) -> Result<Vec<f32>> {
        generic_rows_to_host(tensor, rows)
    }

    /// [`Tensor::class_kth_nearest`]. Overrides must return the same rows as the generic
    /// version (use [`select_kth`](super::select_kth) and
    /// [`resolve_kth_tie`](super::resolve_kth_tie)).
    fn class_kth_nearest(
        &self,
        queries: &Tensor,
        bank: &Tensor,
        counts: &[usize],
        targets: &[(usize, usize)],
        k: usize,
    ) -> Result<Tensor> {
        super::generic_class_kth_nearest(queries, bank, counts, targets, k)
    }
}

/// The generic kernels alone: what a backend without fused versions uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct GenericBankKernels;

impl BankKernels for GenericBankKernels {}

/// The generic [`Tensor::class_logsumexp`]: one matrix product against the flattened bank,
/// padding rows masked to `-inf`, a log-sum-exp per class. Differentiable.
pub fn generic_class_logsumexp(
    queries: &Tensor,
    bank: &Tensor,
    counts: &[usize],
    scale: f64,
) -> Result<Tensor> {
    let (m, classes, capacity, dim) =
        super::neighbours::class_bank_shape("class_logsumexp", queries, bank, counts)?;
    let flat = bank.reshape(&[classes * capacity, dim])?;
    let logits = queries.matmul(&flat.t()?)?.scale(scale)?.reshape(&[m, classes, capacity])?;
    let valid = queries.backend().from_f32(&valid_row_mask(counts, capacity), &[1, classes, capacity])?;
    let logits = valid.where_mask(&logits, &logits.scalar_like(f32::NEG_INFINITY)?)?;
    logits.logsumexp(2, false)
}

/// The generic [`Tensor::class_gram`]: a batched matrix product `X_c^T X_c`.
pub fn generic_class_gram(bank: &Tensor) -> Result<Tensor> {
    bank.transpose(1, 2)?.matmul(bank)
}

/// The generic [`Tensor::rows_to_host`]: [`Tensor::gather_rows`] and a download.
pub fn generic_rows_to_host(tensor: &Tensor, rows: &[usize]) -> Result<Vec<f32>> {
    tensor.gather_rows(rows)?.to_vec_f32()
}
