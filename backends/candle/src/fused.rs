//! Fused kernels for the CPU: the class-wise log-sum-exp of the vMF barrier without the
//! `[m, c * s]` intermediate (see [`hamos_api::Tensor::class_logsumexp`]).
//!
//! The bank is multiplied in class chunks of about [`CHUNK_ELEMS`] logits with candle's gemm,
//! and each chunk is reduced in place, two passes per class segment (max, then the sum of
//! `exp(x - max)` with a vectorizable `exp`), split over rows with rayon.

use candle_core::{CpuStorage, Device, Storage, Tensor as CTensor};
use hamos_api::{Error, Result};
use rayon::prelude::*;

use crate::tensor::Op;

/// Logits per gemm chunk: 4M floats (16 MB) keeps the chunk near the caches.
const CHUNK_ELEMS: usize = 1 << 22;

/// `exp(x)` for `x <= 0` to a few ulp, in a form LLVM vectorizes: Cody-Waite reduction
/// `x = n ln2 + r` with a two-part `ln2`, then a degree-7 Taylor polynomial for `e^r` on
/// `|r| <= ln2 / 2`, scaled by `2^n` through the exponent bits.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    // Round to nearest by the 1.5 * 2^23 trick: `round()` calls libm and blocks vectorization.
    const SHIFTER: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFTER) - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `log(sum(exp(scale * x)))` over one segment of logits.
fn segment_logsumexp(segment: &[f32], scale: f32) -> f32 {
    if segment.is_empty() {
        return f32::NEG_INFINITY;
    }
    let max = segment.iter().copied().fold(f32::NEG_INFINITY, f32::max) * scale;
    let mut lanes = [0.0f32; 8];
    let mut chunks = segment.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += exp_nonpositive(x * scale - max);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&x| exp_nonpositive(x * scale - max)).sum();
    max + (lanes.iter().sum::<f32>() + tail).ln()
}

fn cpu_slice(storage: &Storage, offset: usize, len: usize) -> Result<&[f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(values)) => values
            .get(offset..offset + len)
            .ok_or_else(|| Error::shape("class_logsumexp", "storage shorter than its layout")),
        _ => Err(Error::shape("class_logsumexp", "fused kernel needs F32 tensors on the CPU")),
    }
}

/// The fused class-wise log-sum-exp; `None` off the CPU (callers then use the generic path).
pub(crate) fn class_logsumexp(
    queries: &CTensor,
    bank: &CTensor,
    counts: &[usize],
    scale: f64,
) -> Option<Result<CTensor>> {
    if !matches!(queries.device(), Device::Cpu) || queries.dtype() != candle_core::DType::F32 {
        return None;
    }
    Some(run(queries, bank, counts, scale as f32, CHUNK_ELEMS))
}

fn run(
    queries: &CTensor,
    bank: &CTensor,
    counts: &[usize],
    scale: f32,
    chunk_elems: usize,
) -> Result<CTensor> {
    let (m, classes, capacity, dim) = match (queries.dims(), bank.dims()) {
        (&[m, _], &[c, s, d]) => (m, c, s, d),
        _ => return Err(Error::shape("class_logsumexp", "needs [m, d] and [c, s, d]")),
    };
    let queries = queries.contiguous().op("class_logsumexp")?;
    let bank = bank.contiguous().op("class_logsumexp")?;
    let per_chunk = (chunk_elems / (m.max(1) * capacity.max(1))).clamp(1, classes.max(1));
    let mut out = vec![0.0f32; m * classes];
    let mut first = 0;
    while first < classes {
        let group = per_chunk.min(classes - first);
        let rows = bank
            .narrow(0, first, group)
            .op("class_logsumexp")?
            .reshape((group * capacity, dim))
            .op("class_logsumexp")?;
        let logits = queries.matmul(&rows.t().op("class_logsumexp")?).op("class_logsumexp")?;
        let logits = logits.contiguous().op("class_logsumexp")?;
        let (storage, layout) = logits.storage_and_layout();
        let values = cpu_slice(&storage, layout.start_offset(), m * group * capacity)?;
        out.par_chunks_mut(classes).zip(values.par_chunks(group * capacity)).for_each(
            |(out_row, logit_row)| {
                for (c, segment) in logit_row.chunks(capacity).enumerate() {
                    out_row[first + c] = segment_logsumexp(&segment[..counts[first + c]], scale);
                }
            },
        );
        first += group;
    }
    CTensor::from_vec(out, (m, classes), queries.device()).op("class_logsumexp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std_over_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (f64::from(exp_nonpositive(x)), f64::from(x).exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
    }

    #[test]
    fn chunking_does_not_change_the_result() {
        let device = Device::Cpu;
        let queries = CTensor::randn(0f32, 1.0, (5, 8), &device).unwrap();
        let bank = CTensor::randn(0f32, 1.0, (6, 20, 8), &device).unwrap();
        let counts = [20, 3, 20, 1, 11, 20];
        let whole = run(&queries, &bank, &counts, 2.0, usize::MAX).unwrap().to_vec2::<f32>().unwrap();
        for chunk in [1, 100, 250] {
            let chunked = run(&queries, &bank, &counts, 2.0, chunk).unwrap().to_vec2::<f32>().unwrap();
            // gemm's blocking (and so its rounding) follows the chunk shape.
            for (a, b) in whole.iter().flatten().zip(chunked.iter().flatten()) {
                assert!((a - b).abs() < 1e-5 * (1.0 + a.abs()), "chunk {chunk}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn segment_logsumexp_matches_f64() {
        let segment: Vec<f32> = (0..37).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
        let want = segment.iter().map(|&x| (3.0 * f64::from(x)).exp()).sum::<f64>().ln();
        let got = f64::from(segment_logsumexp(&segment, 3.0));
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
