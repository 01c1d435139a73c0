//! The tile kernels under the fused ops, with AVX2 + FMA on x86_64 when the CPU has them
//! (checked at run time) and portable code elsewhere.
//!
//! The bank is packed with [`LANES`] rows per vector (`packing.rs`): a tile is
//! [`TILE_BLOCKS`] packed blocks (16 rows) by up to [`TILE_QUERIES`] queries, 8 accumulators,
//! each step two vector loads of rows and four broadcasts of query values, no horizontal
//! sums. Any number of queries fills tiles of four (the last repeats a query), so the k-NN
//! energy's handful of queries per class and the barrier's hundreds run at the same speed.
//! Callers write their loops once, generic over [`TileKernel`], and enter them through a
//! `#[target_feature]` function with no closures in between, so the whole loop is compiled for
//! the vector unit.

/// Bank rows per packed block: one AVX2 vector.
pub(crate) const LANES: usize = 8;
/// Packed blocks per tile.
pub(crate) const TILE_BLOCKS: usize = 2;
/// Bank rows per tile.
pub(crate) const TILE_ROWS: usize = LANES * TILE_BLOCKS;
/// Queries per tile.
pub(crate) const TILE_QUERIES: usize = 4;

/// Gram tile: entries along the first index (two AVX2 vectors).
pub(crate) const GRAM_ROWS: usize = 16;
/// Gram tile: entries along the second index (broadcasts).
pub(crate) const GRAM_COLS: usize = 6;

/// `tile[j][i]` = bank row `i` of the tile . query `j`.
pub(crate) type Tile = [[f32; TILE_ROWS]; TILE_QUERIES];

/// The [`TILE_QUERIES`] queries of group `group` (queries `group * TILE_QUERIES..`), the last
/// query repeated past the end. `queries` must not be empty.
pub(crate) fn group_members<'a>(queries: &[&'a [f32]], group: usize) -> [&'a [f32]; TILE_QUERIES] {
    let last = queries.len() - 1;
    std::array::from_fn(|j| queries[(group * TILE_QUERIES + j).min(last)])
}

/// The tile of query group `group` of `queries` against `rows`: the narrow tile for a last
/// group of one or two queries (its other rows zero), else the four-query tile (a short last
/// group repeats its last query).
#[inline(always)]
pub(crate) fn group_tile<K: TileKernel>(
    kernel: K,
    rows: &[f32],
    queries: &[&[f32]],
    group: usize,
    dim: usize,
) -> Tile {
    let first = group * TILE_QUERIES;
    match queries.len() - first {
        members @ (1 | 2) => kernel.tile_narrow(rows, &queries[first..first + members], dim),
        _ => kernel.tile(rows, group_members(queries, group), dim),
    }
}

/// The tile products.
pub(crate) trait TileKernel: Copy {
    /// [`TILE_BLOCKS`] consecutive packed blocks (`[d][LANES]` each) against four query rows
    /// (each of length `dim`).
    fn tile(self, rows: &[f32], queries: [&[f32]; TILE_QUERIES], dim: usize) -> Tile;

    /// [`TileKernel::tile`] for one or two queries (`narrow.rs`), at about a third and a half
    /// of a four-query tile's cost; rows past `queries.len()` of the result are zero.
    #[inline(always)]
    fn tile_narrow(self, rows: &[f32], queries: &[&[f32]], dim: usize) -> Tile {
        super::narrow::portable(rows, queries, dim)
    }

    /// For every query `j` and the first `valid` rows `i` of `tile`: with
    /// `x = scale * tile[j][i] - shift[j]`, adds `e^x` (by [`exp_clamped`]'s rules) to
    /// `sum[j][i % LANES]` and raises `peak[j][i % LANES]` to `x`.
    #[inline(always)]
    fn exp_sums(
        self,
        tile: &Tile,
        valid: usize,
        scale: f32,
        shift: &[f32; TILE_QUERIES],
        sum: &mut [[f32; LANES]; TILE_QUERIES],
        peak: &mut [[f32; LANES]; TILE_QUERIES],
    ) {
        for j in 0..TILE_QUERIES {
            for (i, &dot) in tile[j].iter().enumerate().take(valid) {
                let x = scale * dot - shift[j];
                peak[j][i % LANES] = peak[j][i % LANES].max(x);
                sum[j][i % LANES] += exp_clamped(x);
            }
        }
    }

    /// Adds `sum_r x_r[a + i] x_r[b + j]` over the `count` rows `x_r` of `chunk` (each
    /// `stride` floats) to `acc[(b + j) * stride + a + i]`, for `i < GRAM_ROWS`, `j < GRAM_COLS`.
    #[inline(always)]
    fn gram_tile(self, chunk: &[f32], count: usize, stride: usize, a: usize, b: usize, acc: &mut [f32]) {
        let mut tile = [[0.0f32; GRAM_ROWS]; GRAM_COLS];
        for (j, t) in tile.iter_mut().enumerate() {
            t.copy_from_slice(&acc[(b + j) * stride + a..][..GRAM_ROWS]);
        }
        for row in chunk.chunks_exact(stride).take(count) {
            let xa = &row[a..a + GRAM_ROWS];
            for (t, &xb) in tile.iter_mut().zip(&row[b..b + GRAM_COLS]) {
                for (entry, &x) in t.iter_mut().zip(xa) {
                    *entry += x * xb;
                }
            }
        }
        for (j, t) in tile.iter().enumerate() {
            acc[(b + j) * stride + a..][..GRAM_ROWS].copy_from_slice(t);
        }
    }
}

/// Defines `fn $name(args) -> ret` that runs `$body(kernel, args)` with the best kernel: the
/// AVX2 + FMA one through a `#[target_feature]` wrapper (so `$body`, `#[inline(always)]`, is
/// compiled for the vector unit) when the CPU has them, the portable one otherwise.
macro_rules! dispatch_kernel {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty = $body:ident) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            if let Some(kernel) = super::simd::Avx2Fma::detect() {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn with_avx2(kernel: super::simd::Avx2Fma, $($arg: $ty),*) -> $ret {
                    $body(kernel, $($arg),*)
                }
                // SAFETY: `detect` found AVX2 and FMA on this CPU.
                return unsafe { with_avx2(kernel, $($arg),*) };
            }
            $body(super::simd::Portable, $($arg),*)
        }
    };
}
pub(crate) use dispatch_kernel;

/// Plain Rust (autovectorized for the baseline target).
#[derive(Clone, Copy)]
pub(crate) struct Portable;

impl TileKernel for Portable {
    #[inline(always)]
    fn tile(self, rows: &[f32], queries: [&[f32]; TILE_QUERIES], dim: usize) -> Tile {
        let rows = &rows[..TILE_BLOCKS * dim * LANES];
        let mut acc = [[0.0f32; TILE_ROWS]; TILE_QUERIES];
        for (j, query) in queries.iter().enumerate() {
            for (block, packed) in rows.chunks_exact(dim * LANES).enumerate() {
                let out = &mut acc[j][block * LANES..(block + 1) * LANES];
                for (lanes, &q) in packed.chunks_exact(LANES).zip(&query[..dim]) {
                    for (a, &x) in out.iter_mut().zip(lanes) {
                        *a += x * q;
                    }
                }
            }
        }
        acc
    }
}

/// AVX2 + FMA; only constructed by [`Avx2Fma::detect`].
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2Fma(());

#[cfg(target_arch = "x86_64")]
impl Avx2Fma {
    /// The kernel, when this CPU has AVX2 and FMA.
    pub fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2Fma(()))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::*;

    impl TileKernel for Avx2Fma {
        #[inline(always)]
        fn tile(self, rows: &[f32], queries: [&[f32]; TILE_QUERIES], dim: usize) -> Tile {
            assert!(
                rows.len() >= TILE_BLOCKS * dim * LANES && queries.iter().all(|q| q.len() >= dim),
                "tile operands too short"
            );
            let mut out = [[0.0f32; TILE_ROWS]; TILE_QUERIES];
            // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; the loads read
            // `rows[b * dim * 8 + k * 8..][..8]` (b < 2) and `queries[j][k]` for k < dim, in
            // bounds by the assert (the prefetch only hints); the stores write the 16 floats of
            // each `out` row.
            unsafe {
                let (r0, r1) = (rows.as_ptr(), rows.as_ptr().add(dim * LANES));
                let [q0, q1, q2, q3] = queries.map(<[f32]>::as_ptr);
                // Eight named accumulators, two row vectors and a broadcast: 11 of the 16
                // registers, so nothing spills (a third block would need all 16).
                let z = _mm256_setzero_ps();
                let (mut a00, mut a01, mut a10, mut a11) = (z, z, z, z);
                let (mut a20, mut a21, mut a30, mut a31) = (z, z, z, z);
                for k in 0..dim {
                    // The next tile of the class usually follows this one: fetch all of it
                    // (16 floats, one cache line, per step) while this one runs, non-temporal
                    // so that streaming the bank does not evict the host's small working set
                    // from L2 (against half the tile with T0, paired runs at C = 10: -1.7 and
                    // -2.3 ms per mini-batch in a slow stretch of the VM, -0.5 and +0.3 ms,
                    // within noise, in a fast one). A hint: it never faults; `wrapping_add` as
                    // it may point past the bank.
                    _mm_prefetch::<_MM_HINT_NTA>(r1.wrapping_add(dim * LANES + 2 * k * LANES).cast());
                    let x0 = _mm256_loadu_ps(r0.add(k * LANES));
                    let x1 = _mm256_loadu_ps(r1.add(k * LANES));
                    let y = _mm256_broadcast_ss(&*q0.add(k));
                    a00 = _mm256_fmadd_ps(x0, y, a00);
                    a01 = _mm256_fmadd_ps(x1, y, a01);
                    let y = _mm256_broadcast_ss(&*q1.add(k));
                    a10 = _mm256_fmadd_ps(x0, y, a10);
                    a11 = _mm256_fmadd_ps(x1, y, a11);
                    let y = _mm256_broadcast_ss(&*q2.add(k));
                    a20 = _mm256_fmadd_ps(x0, y, a20);
                    a21 = _mm256_fmadd_ps(x1, y, a21);
                    let y = _mm256_broadcast_ss(&*q3.add(k));
                    a30 = _mm256_fmadd_ps(x0, y, a30);
                    a31 = _mm256_fmadd_ps(x1, y, a31);
                }
                let acc = [[a00, a01], [a10, a11], [a20, a21], [a30, a31]];
                for (out_j, acc_j) in out.iter_mut().zip(&acc) {
                    for (b, a) in acc_j.iter().enumerate() {
                        _mm256_storeu_ps(out_j.as_mut_ptr().add(b * LANES), *a);
                    }
                }
            }
            out
        }

        #[inline(always)]
        fn tile_narrow(self, rows: &[f32], queries: &[&[f32]], dim: usize) -> Tile {
            assert!(
                matches!(queries.len(), 1 | 2)
                    && rows.len() >= TILE_BLOCKS * dim * LANES
                    && queries.iter().all(|q| q.len() >= dim),
                "narrow tile operands"
            );
            // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; operands checked.
            unsafe { super::super::narrow::avx2::tile(rows, queries, dim) }
        }

        #[inline(always)]
        fn exp_sums(
            self,
            tile: &Tile,
            valid: usize,
            scale: f32,
            shift: &[f32; TILE_QUERIES],
            sum: &mut [[f32; LANES]; TILE_QUERIES],
            peak: &mut [[f32; LANES]; TILE_QUERIES],
        ) {
            // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; every load and
            // store touches 8 floats inside a 16-float tile row or an 8-float lane array.
            unsafe {
                let scale_v = _mm256_set1_ps(scale);
                let lane = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
                for j in 0..TILE_QUERIES {
                    let shift_v = _mm256_set1_ps(shift[j]);
                    let mut s = _mm256_loadu_ps(sum[j].as_ptr());
                    let mut p = _mm256_loadu_ps(peak[j].as_ptr());
                    for b in 0..TILE_BLOCKS {
                        let first = b * LANES;
                        if first >= valid {
                            break;
                        }
                        let x =
                            _mm256_fmsub_ps(scale_v, _mm256_loadu_ps(tile[j].as_ptr().add(first)), shift_v);
                        let mut e = exp8(x);
                        let mut x = x;
                        if valid - first < LANES {
                            // Lanes past the valid rows add nothing.
                            let keep =
                                _mm256_cmp_ps::<_CMP_LT_OQ>(lane, _mm256_set1_ps((valid - first) as f32));
                            e = _mm256_and_ps(e, keep);
                            x = _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), x, keep);
                        }
                        p = _mm256_max_ps(p, x);
                        s = _mm256_add_ps(s, e);
                    }
                    _mm256_storeu_ps(sum[j].as_mut_ptr(), s);
                    _mm256_storeu_ps(peak[j].as_mut_ptr(), p);
                }
            }
        }

        #[inline(always)]
        fn gram_tile(self, chunk: &[f32], count: usize, stride: usize, a: usize, b: usize, acc: &mut [f32]) {
            assert!(
                a + GRAM_ROWS <= stride
                    && b + GRAM_COLS <= stride
                    && chunk.len() >= count * stride
                    && acc.len() >= (b + GRAM_COLS) * stride,
                "gram tile out of bounds"
            );
            // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; by the assert every
            // row read (`a..a + 16`, `b..b + 6` of rows `< count`) and every accumulator entry
            // (`a..a + 16` of rows `b..b + 6`) is in bounds.
            unsafe {
                let mut tile = [[_mm256_setzero_ps(); 2]; GRAM_COLS];
                let out = acc.as_mut_ptr();
                for (j, vectors) in tile.iter_mut().enumerate() {
                    for (v, t) in vectors.iter_mut().enumerate() {
                        *t = _mm256_loadu_ps(out.add((b + j) * stride + a + 8 * v));
                    }
                }
                let mut row = chunk.as_ptr();
                for _ in 0..count {
                    let xa = [_mm256_loadu_ps(row.add(a)), _mm256_loadu_ps(row.add(a + 8))];
                    for (j, vectors) in tile.iter_mut().enumerate() {
                        let xb = _mm256_broadcast_ss(&*row.add(b + j));
                        vectors[0] = _mm256_fmadd_ps(xa[0], xb, vectors[0]);
                        vectors[1] = _mm256_fmadd_ps(xa[1], xb, vectors[1]);
                    }
                    row = row.add(stride);
                }
                for (j, vectors) in tile.iter().enumerate() {
                    for (v, t) in vectors.iter().enumerate() {
                        _mm256_storeu_ps(out.add((b + j) * stride + a + 8 * v), *t);
                    }
                }
            }
        }
    }

    /// [`exp_clamped`] on 8 lanes.
    ///
    /// # Safety
    /// AVX2 and FMA must be present.
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        // SAFETY: the caller's contract; no memory access.
        unsafe {
            // `max_ps(c, x)` returns `x` when `x` is NaN, so NaN passes through.
            let x = _mm256_min_ps(_mm256_set1_ps(88.0), _mm256_max_ps(_mm256_set1_ps(-87.0), x));
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
                x,
                _mm256_set1_ps(std::f32::consts::LOG2_E),
            ));
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
            let mut p = _mm256_set1_ps(1.0 / 5040.0);
            for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
            }
            let bits =
                _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
            _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
        }
    }
}

/// `e^x` to a few ulp for `x <= 88`, in a form LLVM vectorizes: Cody-Waite reduction
/// `x = n ln2 + r` with a two-part `ln2`, a degree-7 Taylor polynomial for `e^r` on
/// `|r| <= ln2 / 2`, scaled by `2^n` through the exponent bits. Below -87 it returns `e^-87`
/// (callers add it to a sum of at least 1); NaN stays NaN.
#[inline(always)]
pub(crate) fn exp_clamped(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Comparisons, not `max`/`min`, so NaN passes through.
    let x = if x < -87.0 { -87.0 } else { x };
    let x = if x > 88.0 { 88.0 } else { x };
    // Round to nearest by the 1.5 * 2^23 trick: `round()` calls libm and blocks vectorization.
    const SHIFTER: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + SHIFTER) - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // n is in -126..=127 on the clamped range, a normal exponent.
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests;
