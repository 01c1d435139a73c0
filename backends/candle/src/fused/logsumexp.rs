//! The class-wise log-sum-exp of the vMF barrier (Eqn 11) fused with its matrix product: each
//! tile of logits is exponentiated and summed per query while still in registers, so the
//! `[m, c * s]` logits never exist.

use rayon::prelude::*;

use super::packing::{PackedBank, PackedQueries};
use super::simd::{TileKernel, MR, WIDE as NR};

/// Above this, a shifted logit risks overflowing the `f32` sum: the block is redone with its
/// true maximum as the shift.
const OVERFLOW_GUARD: f32 = 60.0;

/// Row blocks per pass over the query blocks: 32 blocks of 6 rows of 128 floats (96 KB at
/// `d = 128`) stay in L2.
const ROW_BLOCKS_PER_CHUNK: usize = 32;

/// `out[q * classes + c] = log sum_r exp(scale * queries[q] . bank[c, r])` over the `counts[c]`
/// valid rows of class `c` (`-inf` for an empty class). `bank` is `[classes, capacity, dim]`.
pub(crate) fn class_logsumexp(
    queries: &[f32],
    dim: usize,
    bank: &PackedBank,
    counts: &[usize],
    scale: f32,
) -> Vec<f32> {
    let packed = PackedQueries::new(queries.chunks(dim), dim, NR);
    let columns: Vec<Vec<f32>> = counts
        .par_iter()
        .enumerate()
        .map(|(class, &n)| class_column(&packed, bank, class, n, dim, scale))
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

super::simd::dispatch_kernel! {
    /// The log-sum-exp of every query against the `n` rows of `class`.
    fn class_column(
        packed: &PackedQueries,
        bank: &PackedBank,
        class: usize,
        n: usize,
        dim: usize,
        scale: f32,
    ) -> Vec<f32> = class_column_with
}

#[inline(always)]
fn class_column_with<K: TileKernel>(
    kernel: K,
    packed: &PackedQueries,
    bank: &PackedBank,
    class: usize,
    n: usize,
    dim: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; packed.len];
    if n == 0 {
        return out;
    }
    let query_blocks = packed.blocks();
    // The largest logit of the first tile as each query's shift: its sum is then at least 1.
    // (A plain loop, not a closure: closures do not inherit the caller's target features.)
    let mut shifts = vec![[f32::NEG_INFINITY; NR]; query_blocks];
    for (q, shift) in shifts.iter_mut().enumerate() {
        let first = kernel.wide(bank.blocks(class, 0, 1), packed.block(q), dim);
        for tile_row in first.iter().take(n.min(MR)) {
            for (s, &t) in shift.iter_mut().zip(tile_row) {
                *s = s.max(scale * t);
            }
        }
    }
    let mut sums = vec![[0.0f32; NR]; query_blocks];
    let mut peaks = vec![[f32::NEG_INFINITY; NR]; query_blocks];
    // Row blocks in chunks that stay in L2 while every query block passes over them.
    let row_blocks = n.div_ceil(MR);
    let mut first = 0;
    while first < row_blocks {
        let last = (first + ROW_BLOCKS_PER_CHUNK).min(row_blocks);
        for q in 0..query_blocks {
            let block = packed.block(q);
            for b in first..last {
                let tile = kernel.wide(bank.blocks(class, b, 1), block, dim);
                kernel.exp_sums(&tile, (n - b * MR).min(MR), scale, &shifts[q], &mut sums[q], &mut peaks[q]);
            }
        }
        first = last;
    }
    for q in 0..query_blocks {
        if peaks[q].iter().any(|&p| p > OVERFLOW_GUARD) {
            for (s, &p) in shifts[q].iter_mut().zip(&peaks[q]) {
                *s += p.max(0.0);
            }
            let block = packed.block(q);
            sums[q] = block_sums(kernel, bank, class, n, block, dim, scale, &shifts[q]).0;
        }
        for (j, value) in out.iter_mut().skip(q * NR).take(NR).enumerate() {
            *value = shifts[q][j] + sums[q][j].ln();
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
    bank: &PackedBank,
    class: usize,
    n: usize,
    block: &[f32],
    dim: usize,
    scale: f32,
    shift: &[f32; NR],
) -> ([f32; NR], [f32; NR]) {
    let mut sum = [0.0f32; NR];
    let mut peak = [f32::NEG_INFINITY; NR];
    for b in 0..n.div_ceil(MR) {
        let tile = kernel.wide(bank.blocks(class, b, 1), block, dim);
        kernel.exp_sums(&tile, (n - b * MR).min(MR), scale, shift, &mut sum, &mut peak);
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
        bank[2 * 20 * dim..2 * 20 * dim + 2 * dim]
            .copy_from_slice(&[0.2, 0.1, 0.0, 0.0, 0.5, 0.9, 0.0, 0.0, 0.0, 0.1]);
        let counts = [20, 0, 2];
        let queries = [1.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
        for scale in [2.0f32, 100.0] {
            let packed = PackedBank::new(&bank, 3, 20, dim);
            let got = class_logsumexp(&queries, dim, &packed, &counts, scale);
            for (q, query) in queries.chunks(dim).enumerate() {
                for (class, &n) in counts.iter().enumerate() {
                    let logits: Vec<f64> = (0..n)
                        .map(|r| {
                            let row = &bank[(class * 20 + r) * dim..(class * 20 + r + 1) * dim];
                            f64::from(scale)
                                * row.iter().zip(query).map(|(&a, &b)| f64::from(a * b)).sum::<f64>()
                        })
                        .collect();
                    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let want = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
                    let value = f64::from(got[q * 3 + class]);
                    if n == 0 {
                        assert_eq!(value, f64::NEG_INFINITY);
                    } else {
                        assert!(
                            (value - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{scale} {q} {class}: {value} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
