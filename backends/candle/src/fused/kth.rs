//! The k-th nearest row of a class for each (query, class) request, fused: one class at a time,
//! the squared distances of its requesting queries come from the narrow tile kernel, then
//! [`hamos_api::select_kth`] picks the k-th and [`hamos_api::resolve_kth_tie`] settles rows
//! within rounding of it in `f64`, exactly as the generic version does.

use hamos_api::{resolve_kth_tie, select_kth, KthSelection};
use rayon::prelude::*;

use super::packing::{PackedBank, PackedQueries};
use super::simd::{TileKernel, MR, NARROW, WIDE};

/// The flat row `class * capacity + r` of the `min(k, counts[class])`-th nearest valid row `r`
/// for each `(query, class)` of `targets`. `bank` is the raw `[c, s, d]` bank (for the `f64`
/// tie-break), `packed` its packed form. Arguments are validated by the caller.
pub(crate) fn class_kth_nearest(
    queries: &[f32],
    dim: usize,
    bank: &[f32],
    packed: &PackedBank,
    counts: &[usize],
    targets: &[(usize, usize)],
    k: usize,
) -> Vec<i64> {
    let capacity = bank.len() / (counts.len() * dim).max(1);
    let mut per_class: Vec<Vec<(usize, usize)>> = vec![Vec::new(); counts.len()];
    for (target, &(query, class)) in targets.iter().enumerate() {
        per_class[class].push((target, query));
    }
    let found: Vec<Vec<(usize, i64)>> = per_class
        .par_iter()
        .enumerate()
        .filter(|(_, requests)| !requests.is_empty())
        .map(|(class, requests)| {
            let n = counts[class];
            let query_rows = requests.iter().map(|&(_, q)| &queries[q * dim..(q + 1) * dim]);
            // Up to 8 queries fill the narrow tile; more go in wide tiles of 16 (one pass over
            // the rows for up to 16 queries instead of two narrow passes).
            let width = if requests.len() <= NARROW { NARROW } else { WIDE };
            let packed_queries = PackedQueries::new(query_rows, dim, width);
            let row_sq = &packed.row_sq_norms[class * capacity..class * capacity + n];
            let dist_sq = class_distances(&packed_queries, packed, class, row_sq, dim);
            let rows = &bank[class * capacity * dim..(class * capacity + n) * dim];
            let kc = k.min(n);
            requests
                .iter()
                .enumerate()
                .map(|(j, &(target, query))| {
                    let row = match select_kth(&dist_sq[j * n..(j + 1) * n], kc, packed_queries.sq_norms[j]) {
                        KthSelection::Unique(r) => r,
                        KthSelection::Tied { below, candidates } => {
                            let query = &queries[query * dim..(query + 1) * dim];
                            resolve_kth_tie(below, &candidates, kc, query, |r| &rows[r * dim..(r + 1) * dim])
                        }
                    };
                    (target, (class * capacity + row) as i64)
                })
                .collect()
        })
        .collect();
    let mut out = vec![0i64; targets.len()];
    for (target, row) in found.into_iter().flatten() {
        out[target] = row;
    }
    out
}

super::simd::dispatch_kernel! {
    /// `[queries][n]` squared distances `|x|^2 + |q|^2 - 2 q.x` of the packed queries to the
    /// `n` valid rows of `class`.
    fn class_distances(
        queries: &PackedQueries,
        bank: &PackedBank,
        class: usize,
        row_sq: &[f32],
        dim: usize,
    ) -> Vec<f32> = class_distances_with
}

#[inline(always)]
fn class_distances_with<K: TileKernel>(
    kernel: K,
    queries: &PackedQueries,
    bank: &PackedBank,
    class: usize,
    row_sq: &[f32],
    dim: usize,
) -> Vec<f32> {
    let n = row_sq.len();
    let mut dist_sq = vec![0.0f32; queries.len * n];
    let width = queries.width();
    for b in 0..queries.blocks() {
        let block = queries.block(b);
        let lanes = (queries.len - b * width).min(width);
        let mut store = |first: usize, i: usize, j: usize, dot: f32| {
            let (r, q) = (first + i, b * width + j);
            dist_sq[q * n + r] = row_sq[r] + queries.sq_norms[q] - 2.0 * dot;
        };
        if width == WIDE {
            for block_index in 0..n.div_ceil(MR) {
                let tile = kernel.wide(bank.blocks(class, block_index, 1), block, dim);
                let first = block_index * MR;
                for (i, tile_row) in tile.iter().enumerate().take(n - first) {
                    for (j, &dot) in tile_row.iter().enumerate().take(lanes) {
                        store(first, i, j, dot);
                    }
                }
            }
        } else {
            // Two packed blocks (2 MR rows) per tile; the bank keeps a spare zero block.
            for pair in 0..n.div_ceil(2 * MR) {
                let tile = kernel.narrow(bank.blocks(class, 2 * pair, 2), block, dim);
                let first = pair * 2 * MR;
                for (i, tile_row) in tile.iter().enumerate().take(n - first) {
                    for (j, &dot) in tile_row.iter().enumerate().take(lanes) {
                        store(first, i, j, dot);
                    }
                }
            }
        }
    }
    dist_sq
}
