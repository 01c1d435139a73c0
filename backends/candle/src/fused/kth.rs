//! The k-th nearest row of a class for each (query, class) request, fused: one class at a time,
//! the squared distances of its requesting queries come from the tile kernel, then
//! [`hamos_api::select_kth`] picks the k-th and [`hamos_api::resolve_kth_tie`] settles rows
//! within rounding of it in `f64`, exactly as the generic version does.

use hamos_api::{resolve_kth_tie, select_kth, KthSelection};

use super::packing::{sq_norm, PackedBank};
use super::simd::{group_tile, TileKernel, TILE_QUERIES, TILE_ROWS};

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
    // Classes with the most requests first, so the last one to finish is a small one.
    let mut order: Vec<usize> = (0..counts.len()).filter(|&c| !per_class[c].is_empty()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(per_class[c].len() * counts[c]));
    let found: Vec<Vec<(usize, i64)>> = super::pool::map_ordered(&order, |class| {
        let requests = &per_class[class];
        let n = counts[class];
        let stride = n.div_ceil(TILE_ROWS) * TILE_ROWS;
        let query_rows: Vec<&[f32]> =
            requests.iter().map(|&(_, q)| &queries[q * dim..(q + 1) * dim]).collect();
        let query_sq: Vec<f32> = query_rows.iter().map(|q| sq_norm(q)).collect();
        let mut row_sq = vec![0.0f32; stride];
        row_sq[..n].copy_from_slice(&packed.row_sq_norms[class * capacity..class * capacity + n]);
        let dist_sq = class_distances(&query_rows, &query_sq, packed, class, &row_sq, dim);
        let rows = &bank[class * capacity * dim..(class * capacity + n) * dim];
        let kc = k.min(n);
        let selections = select_rows(&dist_sq, stride, n, kc, &query_sq);
        requests
            .iter()
            .zip(selections)
            .map(|(&(target, query), selection)| {
                let row = match selection {
                    KthSelection::Unique(r) => r,
                    KthSelection::Tied { below, candidates } => {
                        let query = &queries[query * dim..(query + 1) * dim];
                        resolve_kth_tie(below, &candidates, kc, query, |r| &rows[r * dim..(r + 1) * dim])
                    }
                };
                (target, (class * capacity + row) as i64)
            })
            .collect()
    });
    let mut out = vec![0i64; targets.len()];
    for (target, row) in found.into_iter().flatten() {
        out[target] = row;
    }
    out
}

super::simd::dispatch_kernel! {
    /// [`select_kth`] for each query's `n` distances (query `j` at `dist_sq[j * stride..]`),
    /// compiled for the vector unit like the kernels (the selection's passes vectorize).
    fn select_rows(dist_sq: &[f32], stride: usize, n: usize, k: usize, query_sq: &[f32]) -> Vec<KthSelection> =
        select_rows_with
}

#[inline(always)]
fn select_rows_with<K: TileKernel>(
    _kernel: K,
    dist_sq: &[f32],
    stride: usize,
    n: usize,
    k: usize,
    query_sq: &[f32],
) -> Vec<KthSelection> {
    let mut out = Vec::with_capacity(query_sq.len());
    for (j, &sq) in query_sq.iter().enumerate() {
        out.push(select_kth(&dist_sq[j * stride..j * stride + n], k, sq));
    }
    out
}

super::simd::dispatch_kernel! {
    /// `[queries][stride]` squared distances `|x|^2 + |q|^2 - 2 q.x` of `queries` to the rows of
    /// `class` (`stride = row_sq.len()`, whole tiles; rows past the class read as zero rows).
    fn class_distances(
        queries: &[&[f32]],
        query_sq: &[f32],
        bank: &PackedBank,
        class: usize,
        row_sq: &[f32],
        dim: usize,
    ) -> Vec<f32> = class_distances_with
}

#[inline(always)]
fn class_distances_with<K: TileKernel>(
    kernel: K,
    queries: &[&[f32]],
    query_sq: &[f32],
    bank: &PackedBank,
    class: usize,
    row_sq: &[f32],
    dim: usize,
) -> Vec<f32> {
    let stride = row_sq.len();
    let mut dist_sq = vec![0.0f32; queries.len() * stride];
    for tile_index in 0..stride / TILE_ROWS {
        let rows = bank.tile_rows(class, tile_index);
        let first = tile_index * TILE_ROWS;
        let norms = &row_sq[first..first + TILE_ROWS];
        for group in 0..queries.len().div_ceil(TILE_QUERIES) {
            let first_query = group * TILE_QUERIES;
            let tile = group_tile(kernel, rows, queries, group, dim);
            for (j, dots) in tile.iter().enumerate().take(queries.len() - first_query) {
                let q = first_query + j;
                let out = &mut dist_sq[q * stride + first..q * stride + first + TILE_ROWS];
                for ((d, &dot), &norm) in out.iter_mut().zip(dots).zip(norms) {
                    *d = norm + query_sq[q] - 2.0 * dot;
                }
            }
        }
    }
    dist_sq
}

#[cfg(test)]
mod speed {
    use super::*;
    use rayon::prelude::*;

    #[test]
    #[ignore = "timing, run by hand with --release"]
    fn distance_speed() {
        for (classes, per_query) in [(10usize, 8usize), (10, 9), (10, 10), (1, 8), (10, 12)] {
            let (capacity, dim) = (1000, 128);
            let mut state = 7u32;
            let mut next = || {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            };
            let bank: Vec<f32> = (0..classes * capacity * dim).map(|_| next()).collect();
            let queries: Vec<f32> = (0..per_query * dim).map(|_| next()).collect();
            let packed = PackedBank::new(&bank, classes, capacity, dim);
            let rows: Vec<&[f32]> = queries.chunks(dim).collect();
            let sq: Vec<f32> = rows.iter().map(|q| sq_norm(q)).collect();
            let row_sq = vec![0.0f32; 1008];
            let reps = 200;
            let start = std::time::Instant::now();
            let mut sink = 0.0;
            for _ in 0..reps {
                for class in 0..classes {
                    sink += class_distances(&rows, &sq, &packed, class, &row_sq, dim)[5];
                }
            }
            let secs = start.elapsed().as_secs_f64();
            let flop = 2.0 * (reps * classes * per_query * capacity * dim) as f64;
            println!("classes {classes} queries {per_query}: {:.1} GFLOP/s ({sink})", flop / secs / 1e9);
            let start = std::time::Instant::now();
            for _ in 0..reps {
                let s: f32 = (0..classes)
                    .into_par_iter()
                    .map(|class| class_distances(&rows, &sq, &packed, class, &row_sq, dim)[5])
                    .sum();
                sink += s;
            }
            let secs = start.elapsed().as_secs_f64();
            println!("  parallel: {:.1} GFLOP/s ({sink})", flop / secs / 1e9);
            // The whole op as the k-NN energy calls it: every query against its class.
            let targets: Vec<(usize, usize)> =
                (0..classes * per_query).map(|t| (t % per_query, t / per_query)).collect();
            let counts = vec![capacity; classes];
            let start = std::time::Instant::now();
            let mut rows_sink = 0;
            for _ in 0..reps {
                rows_sink += class_kth_nearest(&queries, dim, &bank, &packed, &counts, &targets, 200)[0];
            }
            let secs = start.elapsed().as_secs_f64();
            println!("  with selection: {:.3} ms per call ({rows_sink})", secs / reps as f64 * 1e3);
        }
    }
}
