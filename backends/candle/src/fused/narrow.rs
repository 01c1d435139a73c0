//! Tiles of one or two queries, for the last, partial group of a class's queries in the k-NN
//! energy: classes hold 5-11 requests at C = 10, so padded four-query groups spent a fifth to a
//! quarter of their work on repeated queries.
//!
//! A four-query tile keeps eight accumulators, one FMA chain each; a plain one- or two-query
//! tile would have two or four chains and wait on the FMA latency. These split each dot product
//! over consecutive `k` (four ways for one query, two for two), so they run eight chains too,
//! and sum the partial accumulators at the end. The summation order therefore differs from the
//! four-query tile by rounding; the k-NN selection settles rows within rounding in `f64`.

use super::simd::{Tile, LANES, TILE_BLOCKS, TILE_QUERIES, TILE_ROWS};

/// Dot products of the [`TILE_BLOCKS`] packed blocks of `rows` with `queries` (one or two of
/// them), in the first rows of the returned tile (the others zero); plain Rust.
pub(crate) fn portable(rows: &[f32], queries: &[&[f32]], dim: usize) -> Tile {
    let mut out = [[0.0f32; TILE_ROWS]; TILE_QUERIES];
    for (out_j, query) in out.iter_mut().zip(queries) {
        for (block, packed) in rows[..TILE_BLOCKS * dim * LANES].chunks_exact(dim * LANES).enumerate() {
            let acc = &mut out_j[block * LANES..(block + 1) * LANES];
            for (lanes, &q) in packed.chunks_exact(LANES).zip(&query[..dim]) {
                for (a, &x) in acc.iter_mut().zip(lanes) {
                    *a += x * q;
                }
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::*;

    /// [`super::portable`] with AVX2 + FMA.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `rows` must hold [`TILE_BLOCKS`] blocks of `dim * LANES`
    /// floats and every query `dim` floats; one or two queries.
    #[inline(always)]
    pub(crate) unsafe fn tile(rows: &[f32], queries: &[&[f32]], dim: usize) -> Tile {
        const { assert!(TILE_BLOCKS == 2, "the narrow tiles read two blocks") };
        let mut out = [[0.0f32; TILE_ROWS]; TILE_QUERIES];
        // SAFETY: the caller's contract; loads read `rows[b * dim * 8 + k * 8..][..8]` (b < 2)
        // and `query[k]` for k < dim; stores write the 16 floats of an `out` row.
        unsafe {
            let (r0, r1) = (rows.as_ptr(), rows.as_ptr().add(dim * LANES));
            // Macros, not closures: a closure is a function of its own, compiled without the
            // caller's target features unless inlined.
            macro_rules! row {
                ($r:expr, $k:expr) => {
                    _mm256_loadu_ps($r.add($k * LANES))
                };
            }
            macro_rules! store {
                ($out_j:expr, $b0:expr, $b1:expr) => {
                    _mm256_storeu_ps($out_j.as_mut_ptr(), $b0);
                    _mm256_storeu_ps($out_j.as_mut_ptr().add(LANES), $b1);
                };
            }
            let z = _mm256_setzero_ps();
            if let [q] = queries {
                let q = q.as_ptr();
                // Step `k` of the one query into the accumulators of blocks 0 and 1.
                macro_rules! step {
                    ($k:expr, $a0:ident, $a1:ident) => {{
                        let y = _mm256_broadcast_ss(&*q.add($k));
                        $a0 = _mm256_fmadd_ps(row!(r0, $k), y, $a0);
                        $a1 = _mm256_fmadd_ps(row!(r1, $k), y, $a1);
                    }};
                }
                // a{block}{k mod 4}
                let (mut a00, mut a01, mut a02, mut a03) = (z, z, z, z);
                let (mut a10, mut a11, mut a12, mut a13) = (z, z, z, z);
                let mut k = 0;
                while k + 4 <= dim {
                    step!(k, a00, a10);
                    step!(k + 1, a01, a11);
                    step!(k + 2, a02, a12);
                    step!(k + 3, a03, a13);
                    k += 4;
                }
                for k in k..dim {
                    step!(k, a00, a10);
                }
                let b0 = _mm256_add_ps(_mm256_add_ps(a00, a01), _mm256_add_ps(a02, a03));
                let b1 = _mm256_add_ps(_mm256_add_ps(a10, a11), _mm256_add_ps(a12, a13));
                store!(out[0], b0, b1);
            } else if let [p, q] = queries {
                let (p, q) = (p.as_ptr(), q.as_ptr());
                // Step `k` of both queries into their accumulators of blocks 0 and 1.
                macro_rules! step {
                    ($k:expr, $p0:ident, $p1:ident, $q0:ident, $q1:ident) => {{
                        let (x0, x1) = (row!(r0, $k), row!(r1, $k));
                        let y = _mm256_broadcast_ss(&*p.add($k));
                        $p0 = _mm256_fmadd_ps(x0, y, $p0);
                        $p1 = _mm256_fmadd_ps(x1, y, $p1);
                        let y = _mm256_broadcast_ss(&*q.add($k));
                        $q0 = _mm256_fmadd_ps(x0, y, $q0);
                        $q1 = _mm256_fmadd_ps(x1, y, $q1);
                    }};
                }
                // a{query}{block}{k mod 2}
                let (mut a000, mut a001, mut a010, mut a011) = (z, z, z, z);
                let (mut a100, mut a101, mut a110, mut a111) = (z, z, z, z);
                let mut k = 0;
                while k + 2 <= dim {
                    step!(k, a000, a010, a100, a110);
                    step!(k + 1, a001, a011, a101, a111);
                    k += 2;
                }
                if k < dim {
                    step!(k, a000, a010, a100, a110);
                }
                store!(out[0], _mm256_add_ps(a000, a001), _mm256_add_ps(a010, a011));
                store!(out[1], _mm256_add_ps(a100, a101), _mm256_add_ps(a110, a111));
            }
        }
        out
    }
}
