//! Input checks shared by the scorers.

use hamos_api::{DType, Error, Result, ScoreInput, Tensor};

/// Checks that `t` is an F32 `[m, d]` tensor and returns `(m, d)`.
pub(crate) fn rows_of(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize)> {
    match t.dims()[..] {
        [m, d] if d > 0 && t.dtype() == DType::F32 => Ok((m, d)),
        _ => Err(Error::shape(
            op,
            format!("{what} must be an F32 [m, d] tensor, got {:?} {:?}", t.dtype(), t.dims()),
        )),
    }
}

/// The logits of `input`, or an error saying that `scorer` needs them.
pub(crate) fn logits_of<'a>(scorer: &'static str, input: &'a ScoreInput) -> Result<&'a Tensor> {
    let logits = input.logits.as_ref().ok_or_else(|| {
        Error::Data(format!(
            "the `{scorer}` scorer needs classifier logits (ScoreInput.logits), but none were given; \
             use a model with a classification head or an embedding scorer such as `knn`"
        ))
    })?;
    rows_of(scorer, "logits", logits)?;
    Ok(logits)
}

/// An empty `[0]` score tensor on the backend of `like`.
pub(crate) fn empty_scores(like: &Tensor) -> Result<Tensor> {
    like.backend().from_f32(&[], &[0])
}
