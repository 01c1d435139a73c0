//! Activation shaping shared by ASH-S ([`crate::AshScorer`]) and SCALE ([`crate::ScaleScorer`]):
//! both rescale the penultimate activations by `exp(s1 / s2)` and score the energy of the
//! recomputed logits; they differ only in whether the activations outside the top-k are zeroed.

use hamos_api::{Consumes, Error, Result, ScoreInput, Tensor};

use crate::common::{empty_scores, features_of, head_of};

/// Elements of the `[rows, k, c]` gathered-weight tensor built per chunk of test rows.
const CHUNK_ELEMENTS: usize = 1 << 22;

/// Errors unless `0 <= percentile < 100` (100 would keep no activation, and `s2` would be 0).
pub(crate) fn check_percentile(percentile: f64) -> Result<()> {
    if !(0.0..100.0).contains(&percentile) {
        return Err(Error::invalid("scorer.percentile", format!("{percentile} is outside [0, 100)")));
    }
    Ok(())
}

/// How many of `w` activations are kept: `w - round(w * percentile / 100)`, rounding half to
/// even because the reference code (Djurisic et al.; Xu et al.; OpenOOD) uses `np.round`.
pub(crate) fn kept_count(scorer: &'static str, w: usize, percentile: f64) -> Result<usize> {
    let pruned = (w as f64 * percentile / 100.0).round_ties_even() as usize;
    match w.checked_sub(pruned) {
        Some(k) if k > 0 => Ok(k),
        _ => Err(Error::invalid(
            "scorer.percentile",
            format!("{scorer}: percentile {percentile} of {w} features keeps no activation"),
        )),
    }
}

/// Energy scores `logsumexp(exp(s1 / s2) * (W a) + b)` of the rows of `input.features`, where
/// `s1` is a row's sum, `s2` the sum of its `k` largest activations, and `a` the row with
/// everything outside those `k` zeroed (`prune`, ASH-S) or the row itself (SCALE).
///
/// A row whose top-k sum `s2` is 0 (for non-negative activations: an all-zero row) is left
/// unscaled (factor 1) instead of producing `0 / 0`.
pub(crate) fn shaped_energy(
    scorer: &'static str,
    input: &ScoreInput,
    percentile: f64,
    prune: bool,
) -> Result<Tensor> {
    input.require(scorer, &[Consumes::Features, Consumes::Head])?;
    let (features, m, w) = features_of(scorer, input)?;
    let (head, c) = head_of(scorer, input, w)?;
    if m == 0 {
        return empty_scores(features);
    }
    let k = kept_count(scorer, w, percentile)?;
    let x = features.detach()?;
    let weight_t = head.weight.detach()?.t()?;
    let bias = head.bias.detach()?;
    let chunk = (CHUNK_ELEMENTS / (k * c).max(1)).max(1);
    let mut parts = Vec::with_capacity(m.div_ceil(chunk));
    for start in (0..m).step_by(chunk) {
        let rows = chunk.min(m - start);
        let rows_x = x.narrow(0, start, rows)?;
        let (top, top_index) = rows_x.topk(k, 1, true)?;
        let factor = sharpening(&rows_x, &top)?;
        // W a over the kept entries only, by gathering their weight columns: the API has no
        // scatter to rebuild the pruned activation vector, and this keeps topk's exact choice.
        let raw = if prune {
            let picked =
                weight_t.index_select(0, &top_index.reshape(&[rows * k])?)?.reshape(&[rows, k, c])?;
            top.reshape(&[rows, 1, k])?.matmul(&picked)?.reshape(&[rows, c])?
        } else {
            rows_x.matmul(&weight_t)?
        };
        parts.push(raw.mul(&factor)?.add(&bias)?.logsumexp(1, false)?);
    }
    Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
}

/// `exp(s1 / s2)` per row, `[rows, 1]`, with factor 1 where `s2 == 0`.
fn sharpening(rows_x: &Tensor, top: &Tensor) -> Result<Tensor> {
    let s1 = rows_x.sum(1, true)?;
    let s2 = top.sum(1, true)?;
    let zero = s2.eq(&s2.scalar_like(0.0)?)?;
    let safe_s2 = zero.where_mask(&s2.full_like(1.0)?, &s2)?;
    let ratio = zero.where_mask(&s2.full_like(0.0)?, &s1.div(&safe_s2)?)?;
    ratio.exp()
}
