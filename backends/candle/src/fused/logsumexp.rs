//! The class-wise log-sum-exp of the vMF barrier (Eqn 11) fused with its matrix product: each
//! tile of logits is exponentiated and summed per query while still in registers, so the
//! `[m, c * s]` logits never exist.

use rayon::prelude::*;

use super::simd::{tile_at, PackedQueries, TileKernel, MR, NR};

/// Above this, a shifted logit risks overflowing the `f32` sum: the block is redone with its
/// true maximum as the shift.
const OVERFLOW_GUARD: f32 = 60.0;

/// `out[q * classes + c] = log sum_r exp(scale * queries[q] . bank[c, r])` over the `counts[c]`
/// valid rows of class `c` (`-inf` for an empty class). `bank` is `[classes, capacity, dim]`.
pub(crate) fn class_logsumexp(
    queries: &[f32],
    dim: usize,
    bank: &[f32],
    capacity: usize,
    counts: &[usize],
    scale: f32,
) -> Vec<f32> {
    let packed = PackedQueries::new(queries.chunks(dim), dim);
    let columns: Vec<Vec<f32>> = counts
        .par_iter()
        .enumerate()
        .map(|(class, &n)| {
            let rows = &bank[class * capacity * dim..(class * capacity + n) * dim];
            class_column(&packed, rows, n, dim, scale)
        })
        .collect();
    let (m, classes) = (packed.len, counts.len());
    let mut out = vec![0.0f32; m * classes];
    for (class, column) in columns.iter().enumerate() {
        for (q, &value) in column.iter().enumerate() {
            out[q * classes + class] = value;
        }
    }
    out
}

fn class_column(packed: &PackedQueries, rows: &[f32], n: usize, dim: usize, scale: f32) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = super::simd::Avx2Fma::detect() {
        // SAFETY: `detect` found AVX2 and FMA on this CPU.
        return unsafe { class_column_avx2(kernel, packed, rows, n, dim, scale) };
    }
    class_column_with(super::simd::Portable, packed, rows, n, dim, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn class_column_avx2(
    kernel: super::simd::Avx2Fma,
    packed: &PackedQueries,
    rows: &[f32],
    n: usize,
    dim: usize,
    scale: f32,
) -> Vec<f32> {
    class_column_with(kernel, packed, rows, n, dim, scale)
}

#[inline(always)]
fn class_column_with<K: TileKernel>(
    kernel: K,
    packed: &PackedQueries,
    rows: &[f32],
    n: usize,
    dim: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; packed.len];
    if n == 0 {
        return out;
    }
    let mut pad = vec![0.0f32; MR * dim];
    for b in 0..packed.blocks() {
        let block = packed.block(b, dim);
        // The largest logit of the first tile as the shift: the sum is then at least 1.
        let first = tile_at(kernel, rows, n, 0, block, dim, &mut pad);
        let mut shift = [f32::NEG_INFINITY; NR];
        for tile_row in first.iter().take(n.min(MR)) {
            for (s, &t) in shift.iter_mut().zip(tile_row) {
                *s = s.max(scale * t);
            }
        }
        let (mut sum, peak) = block_sums(kernel, rows, n, block, dim, scale, &shift, &mut pad);
        if peak.iter().any(|&p| p > OVERFLOW_GUARD) {
            for (s, &p) in shift.iter_mut().zip(&peak) {
                *s += p.max(0.0);
            }
            sum = block_sums(kernel, rows, n, block, dim, scale, &shift, &mut pad).0;
        }
        for (j, value) in out.iter_mut().skip(b * NR).take(NR).enumerate() {
            *value = shift[j] + sum[j].ln();
        }
    }
    out
}

/// Sums of `exp(scale * logit - shift)` over all rows, and the largest shifted logit, per query
/// of one block.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_sums<K: TileKernel>(
    kernel: K,
    rows: &[f32],
    n: usize,
    block: &[f32],
    dim: usize,
    scale: f32,
    shift: &[f32; NR],
    pad: &mut [f32],
) -> ([f32; NR], [f32; NR]) {
    let mut sum = [0.0f32; NR];
    let mut peak = [f32::NEG_INFINITY; NR];
    let mut first = 0;
    while first < n {
        let tile = tile_at(kernel, rows, n, first, block, dim, pad);
        kernel.exp_sums(&tile, (n - first).min(MR), scale, shift, &mut sum, &mut peak);
        first += MR;
    }
    (sum, peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_even_when_the_first_tile_is_not_the_maximum() {
        let dim = 5;
        // Class 0: the first rows are far, a later row is close (the guard must redo it at a
        // large scale); class 1 is empty; class 2 has fewer rows than a tile.
        let mut bank = vec![0.0f32; 3 * 20 * dim];
        for r in 0..20 {
            let row = &mut bank[r * dim..(r + 1) * dim];
            row[0] = if r == 13 { 1.0 } else { -0.5 + r as f32 * 0.01 };
            row[1] = 0.3;
        }
        bank[2 * 20 * dim..2 * 20 * dim + 2 * dim].copy_from_slice(&[0.2, 0.1, 0.0, 0.0, 0.5, 0.9, 0.0, 0.0, 0.0, 0.1]);
        let counts = [20, 0, 2];
        let queries = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        for scale in [2.0f32, 100.0] {
            let got = class_logsumexp(&queries, dim, &bank, 20, &counts, scale);
            for (q, query) in queries.chunks(dim).enumerate() {
                for (class, &n) in counts.iter().enumerate() {
                    let logits: Vec<f64> = (0..n)
                        .map(|r| {
                            let row = &bank[(class * 20 + r) * dim..(class * 20 + r + 1) * dim];
                            f64::from(scale) * row.iter().zip(query).map(|(&a, &b)| f64::from(a * b)).sum::<f64>()
                        })
                        .collect();
                    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let want = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
                    let value = f64::from(got[q * 3 + class]);
                    if n == 0 {
                        assert_eq!(value, f64::NEG_INFINITY);
                    } else {
                        assert!((value - want).abs() < 1e-4 * (1.0 + want.abs()), "{scale} {q} {class}: {value} vs {want}");
                    }
                }
            }
        }
    }
}
