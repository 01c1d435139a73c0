//! Input checks shared by the scorers.

use hamos_api::{Consumes, DType, Error, LinearHead, Result, ScoreInput, Tensor};

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
    input.require(scorer, &[Consumes::Logits])?;
    let logits = input.logits.as_ref().ok_or_else(|| missing(scorer, "logits"))?;
    rows_of(scorer, "logits", logits)?;
    Ok(logits)
}

/// The penultimate features of `input` and their `(m, w)`, or an error naming `scorer`.
pub(crate) fn features_of<'a>(
    scorer: &'static str,
    input: &'a ScoreInput,
) -> Result<(&'a Tensor, usize, usize)> {
    input.require(scorer, &[Consumes::Features])?;
    let features = input.features.as_ref().ok_or_else(|| missing(scorer, "features"))?;
    let (m, w) = rows_of(scorer, "penultimate features", features)?;
    Ok((features, m, w))
}

/// The classification layer of `input` and its class count, checked against feature width `w`.
pub(crate) fn head_of<'a>(
    scorer: &'static str,
    input: &'a ScoreInput,
    w: usize,
) -> Result<(&'a LinearHead, usize)> {
    input.require(scorer, &[Consumes::Head])?;
    let head = input.head.as_ref().ok_or_else(|| missing(scorer, "head"))?;
    let (c, head_w) = head.check()?;
    if head_w != w {
        return Err(Error::shape(
            scorer,
            format!("the classification layer takes {head_w} features, but the features have width {w}"),
        ));
    }
    Ok((head, c))
}

/// Unreachable after [`ScoreInput::require`]; an error rather than a panic all the same.
fn missing(scorer: &str, what: &str) -> Error {
    Error::Data(format!("the `{scorer}` scorer needs ScoreInput.{what}, but it is missing"))
}

/// An empty `[0]` score tensor on the backend of `like`.
pub(crate) fn empty_scores(like: &Tensor) -> Result<Tensor> {
    like.backend().from_f32(&[], &[0])
}
