//! Shape checks and masked reductions shared by the losses.

use hamos_api::{DType, Error, Result, Tensor};

/// Checks that `embeddings` is `[b, d]` with `b >= 1`, and returns `(b, d)`.
pub(crate) fn embedding_dims(op: &'static str, embeddings: &Tensor) -> Result<(usize, usize)> {
    match embeddings.dims()[..] {
        [b, d] if b > 0 && d > 0 && embeddings.dtype() == DType::F32 => Ok((b, d)),
        _ => Err(Error::shape(
            op,
            format!(
                "embeddings must be a non-empty F32 [b, d] tensor, got {:?} {:?}",
                embeddings.dtype(),
                embeddings.dims()
            ),
        )),
    }
}

/// Checks that `labels` is an `I64` tensor of `b` elements and returns it reshaped to `[b]`.
pub(crate) fn labels_for(op: &'static str, labels: &Tensor, b: usize) -> Result<Tensor> {
    if labels.dtype() != DType::I64 || labels.elem_count() != b || labels.rank() > 2 {
        return Err(Error::shape(
            op,
            format!(
                "labels must be {b} I64 values (one per embedding row), got {:?} {:?}",
                labels.dtype(),
                labels.dims()
            ),
        ));
    }
    labels.reshape(&[b])
}

/// Host copy of `labels`, each checked to lie in `0..classes`.
pub(crate) fn host_labels(op: &'static str, labels: &Tensor, classes: usize) -> Result<Vec<usize>> {
    labels
        .to_vec_i64()?
        .into_iter()
        .map(|label| {
            usize::try_from(label).ok().filter(|&l| l < classes).ok_or_else(|| {
                Error::Data(format!("{op}: label {label} is outside 0..{classes} (one per prototype)"))
            })
        })
        .collect()
}

/// `[n, n]` F32 mask that is 1 off the diagonal and 0 on it, on the backend of `like`.
pub(crate) fn off_diagonal(like: &Tensor, n: usize) -> Result<Tensor> {
    let mask: Vec<f32> = (0..n * n).map(|i| if i / n == i % n { 0.0 } else { 1.0 }).collect();
    like.backend().from_f32(&mask, &[n, n])
}

/// `log(sum_j mask_ij exp(x_ij))` along dim 1 of a rank-2 `x`, shape `[n, 1]`: masked entries
/// are set to `-inf` before a stable log-sum-exp, so no scale of `x` under- or overflows and
/// the masked entries get exactly zero gradient.
pub(crate) fn masked_logsumexp_rows(x: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let neg_inf = x.scalar_like(f32::NEG_INFINITY)?;
    mask.where_mask(x, &neg_inf)?.logsumexp(1, true)
}

/// A zero of shape `[1]` that still depends on `embeddings` (its gradient is all zeros), so a
/// caller can always differentiate it, on any backend.
pub(crate) fn zero_loss(embeddings: &Tensor) -> Result<Tensor> {
    embeddings.sum_all()?.scale(0.0)
}
