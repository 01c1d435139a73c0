//! The class-wise log-sum-exp of the vMF barrier (Eqn 11) fused with its matrix product: each
//! tile of logits is exponentiated and summed per query (eight lane sums, one per row lane)
//! right after the product, so the `[m, c * s]` logits never exist.

use super::packing::PackedBank;
use super::simd::{group_members, TileKernel, LANES, TILE_QUERIES, TILE_ROWS};

/// Above this, a shifted logit risks overflowing the `f32` sum: the group of queries is redone
/// with its true maximum as the shift.
const OVERFLOW_GUARD: f32 = 60.0;

/// Tiles per pass over the query groups: two tiles of 16 rows of 128 floats (16 KB at
/// `d = 128`) stay in L1.
const TILES_PER_CHUNK: usize = 2;

/// Per query of a group: the sum of `exp(logit - shift)` and the largest shifted logit, lane-wise.
type LaneSums = [[f32; LANES]; TILE_QUERIES];

/// `out[q * classes + c] = log sum_r exp(scale * queries[q] . bank[c, r])` over the `counts[c]`
/// valid rows of class `c` (`-inf` for an empty class). `queries` is `[m, dim]`.
pub(crate) fn class_logsumexp(
    queries: &[f32],
    dim: usize,
    bank: &PackedBank,
    counts: &[usize],
    scale: f32,
) -> Vec<f32> {
    let query_rows: Vec<&[f32]> = queries.chunks_exact(dim.max(1)).collect();
    let order: Vec<usize> = (0..counts.len()).collect();
    let columns: Vec<Vec<f32>> = super::pool::map_ordered(&order, |class| {
        class_column(&query_rows, bank, class, counts[class], dim, scale)
    });
    let (m, classes) = (query_rows.len(), counts.len());
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
        queries: &[&[f32]],
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
    queries: &[&[f32]],
    bank: &PackedBank,
    class: usize,
    n: usize,
    dim: usize,
    scale: f32,
) -> Vec<f32> {
    let mut out = vec![f32::NEG_INFINITY; queries.len()];
    if n == 0 || queries.is_empty() {
        return out;
    }
    let groups = queries.len().div_ceil(TILE_QUERIES);
    let tiles = n.div_ceil(TILE_ROWS);
    // Always the four-query tile (a short last group repeats its last query), never the narrow
    // one, whose sums run in another order: a query's value must not depend on which queries
    // share its call (thresholds are computed for all starts at once or for a few at a time).
    // The largest logit of the first tile as each query's shift: its sum is then at least 1.
    // (A plain loop, not a closure: closures do not inherit the caller's target features.)
    let mut shifts = vec![[f32::NEG_INFINITY; TILE_QUERIES]; groups];
    for (group, shift) in shifts.iter_mut().enumerate() {
        let first = kernel.tile(bank.tile_rows(class, 0), group_members(queries, group), dim);
        for (s, dots) in shift.iter_mut().zip(&first) {
            for &dot in dots.iter().take(n.min(TILE_ROWS)) {
                *s = s.max(scale * dot);
            }
        }
    }
    let mut sums: Vec<LaneSums> = vec![[[0.0; LANES]; TILE_QUERIES]; groups];
    let mut peaks: Vec<LaneSums> = vec![[[f32::NEG_INFINITY; LANES]; TILE_QUERIES]; groups];
    // Tiles in chunks that stay in L1 while every query group passes over them.
    for chunk in (0..tiles).step_by(TILES_PER_CHUNK) {
        for group in 0..groups {
            let members = group_members(queries, group);
            for tile_index in chunk..(chunk + TILES_PER_CHUNK).min(tiles) {
                let tile = kernel.tile(bank.tile_rows(class, tile_index), members, dim);
                let valid = (n - tile_index * TILE_ROWS).min(TILE_ROWS);
                kernel.exp_sums(&tile, valid, scale, &shifts[group], &mut sums[group], &mut peaks[group]);
            }
        }
    }
    for group in 0..groups {
        let peak = |j: usize| peaks[group][j].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if (0..TILE_QUERIES).any(|j| peak(j) > OVERFLOW_GUARD) {
            let raised: [f32; TILE_QUERIES] = std::array::from_fn(|j| shifts[group][j] + peak(j).max(0.0));
            shifts[group] = raised;
            sums[group] =
                group_sums(kernel, bank, class, n, group_members(queries, group), dim, scale, &raised);
        }
        for j in 0..TILE_QUERIES.min(queries.len() - group * TILE_QUERIES) {
            out[group * TILE_QUERIES + j] = shifts[group][j] + sums[group][j].iter().sum::<f32>().ln();
        }
    }
    out
}

/// Lane-wise sums of `exp(scale * logit - shift)` over all rows, per query of one group.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn group_sums<K: TileKernel>(
    kernel: K,
    bank: &PackedBank,
    class: usize,
    n: usize,
    members: [&[f32]; TILE_QUERIES],
    dim: usize,
    scale: f32,
    shift: &[f32; TILE_QUERIES],
) -> LaneSums {
    let mut sum = [[0.0f32; LANES]; TILE_QUERIES];
    let mut peak = [[f32::NEG_INFINITY; LANES]; TILE_QUERIES];
    for tile_index in 0..n.div_ceil(TILE_ROWS) {
        let tile = kernel.tile(bank.tile_rows(class, tile_index), members, dim);
        let valid = (n - tile_index * TILE_ROWS).min(TILE_ROWS);
        kernel.exp_sums(&tile, valid, scale, shift, &mut sum, &mut peak);
    }
    sum
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
