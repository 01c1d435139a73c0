//! The k-th nearest row of a class for each (query, class) request, fused: one class at a time,
//! the squared distances of its requesting queries come from the tile kernel, then
//! [`hamos_api::select_kth`] picks the k-th and [`hamos_api::resolve_kth_tie`] settles rows
//! within rounding of it in `f64`, exactly as the generic version does.

use hamos_api::{resolve_kth_tie, select_kth, KthSelection};
use rayon::prelude::*;

use super::simd::{tile_at, PackedQueries, TileKernel, MR, NR};

/// The flat row `class * capacity + r` of the `min(k, counts[class])`-th nearest valid row `r`
/// for each `(query, class)` of `targets`. Arguments are validated by the caller.
pub(crate) fn class_kth_nearest(
    queries: &[f32],
    dim: usize,
    bank: &[f32],
    capacity: usize,
    counts: &[usize],
    targets: &[(usize, usize)],
    k: usize,
) -> Vec<i64> {
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
            let rows = &bank[class * capacity * dim..(class * capacity + n) * dim];
            let query_rows = requests.iter().map(|&(_, q)| &queries[q * dim..(q + 1) * dim]);
            let packed = PackedQueries::new(query_rows, dim);
            let dist_sq = class_distances(&packed, rows, n, dim);
            requests
                .iter()
                .enumerate()
                .map(|(j, &(target, query))| {
                    let kc = k.min(n);
                    let row = match select_kth(&dist_sq[j * n..(j + 1) * n], kc, packed.sq_norms[j]) {
                        KthSelection::Unique(r) => r,
                        KthSelection::Tied { below, candidates } => {
                            resolve_kth_tie(below, &candidates, kc, &queries[query * dim..(query + 1) * dim], |r| {
                                &rows[r * dim..(r + 1) * dim]
                            })
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

/// `[queries][n]` squared distances `|x|^2 + |q|^2 - 2 q.x` of the packed queries to the `n`
/// rows.
fn class_distances(packed: &PackedQueries, rows: &[f32], n: usize, dim: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = super::simd::Avx2Fma::detect() {
        // SAFETY: `detect` found AVX2 and FMA on this CPU.
        return unsafe { class_distances_avx2(kernel, packed, rows, n, dim) };
    }
    class_distances_with(super::simd::Portable, packed, rows, n, dim)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn class_distances_avx2(
    kernel: super::simd::Avx2Fma,
    packed: &PackedQueries,
    rows: &[f32],
    n: usize,
    dim: usize,
) -> Vec<f32> {
    class_distances_with(kernel, packed, rows, n, dim)
}

#[inline(always)]
fn class_distances_with<K: TileKernel>(
    kernel: K,
    packed: &PackedQueries,
    rows: &[f32],
    n: usize,
    dim: usize,
) -> Vec<f32> {
    let row_sq: Vec<f32> = rows.chunks_exact(dim).map(|r| r.iter().map(|x| x * x).sum()).collect();
    let mut dist_sq = vec![0.0f32; packed.len * n];
    let mut pad = vec![0.0f32; MR * dim];
    for b in 0..packed.blocks() {
        let block = packed.block(b, dim);
        let lanes = (packed.len - b * NR).min(NR);
        let mut first = 0;
        while first < n {
            let tile = tile_at(kernel, rows, n, first, block, dim, &mut pad);
            for (i, tile_row) in tile.iter().enumerate().take((n - first).min(MR)) {
                let r = first + i;
                for (j, &dot) in tile_row.iter().enumerate().take(lanes) {
                    let q = b * NR + j;
                    dist_sq[q * n + r] = row_sq[r] + packed.sq_norms[q] - 2.0 * dot;
                }
            }
            first += MR;
        }
    }
    dist_sq
}
