//! The tile kernels under both fused ops, with AVX2 + FMA on x86_64 when the CPU has them
//! (checked at run time) and portable code elsewhere.
//!
//! Both broadcast one bank value and multiply it into vectors of packed queries (12
//! accumulators, no horizontal sums): the *wide* tile is [`MR`] rows by 16 queries (the barrier:
//! hundreds of queries per class), the *narrow* tile `2 MR` rows by 8 queries (the k-NN energy:
//! about `2 N_adj` queries per class). Callers write their loops once, generic over
//! [`TileKernel`], and enter them through a `#[target_feature]` function with no closures in
//! between, so the whole loop is compiled for the vector unit.

/// Bank rows per packed block (and per wide tile).
pub(crate) const MR: usize = 6;
/// Queries per wide tile (two AVX2 vectors).
pub(crate) const WIDE: usize = 16;
/// Queries per narrow tile (one AVX2 vector).
pub(crate) const NARROW: usize = 8;

/// Gram tile: entries along the first index (two AVX2 vectors).
pub(crate) const GRAM_ROWS: usize = 16;
/// Gram tile: entries along the second index (broadcasts).
pub(crate) const GRAM_COLS: usize = 6;

/// `tile[i][j]` = bank row `i` . query `j`.
pub(crate) type WideTile = [[f32; WIDE]; MR];
/// `tile[i][j]` = bank row `i` . query `j`, rows of two consecutive blocks.
pub(crate) type NarrowTile = [[f32; NARROW]; 2 * MR];

/// The tile products.
pub(crate) trait TileKernel: Copy {
    /// One block of packed rows (`[d][MR]`) against one block of 16 packed queries.
    fn wide(self, rows: &[f32], queries: &[f32], dim: usize) -> WideTile;

    /// Two consecutive blocks of packed rows (`2 x [d][MR]`) against 8 packed queries.
    fn narrow(self, rows: &[f32], queries: &[f32], dim: usize) -> NarrowTile;

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

    /// For the first `valid` rows `i` of `tile` and every lane `j`: with
    /// `x = scale * tile[i][j] - shift[j]`, adds `e^x` (by [`exp_clamped`]'s rules) to `sum[j]`
    /// and raises `peak[j]` to `x`.
    #[inline(always)]
    fn exp_sums(
        self,
        tile: &WideTile,
        valid: usize,
        scale: f32,
        shift: &[f32; WIDE],
        sum: &mut [f32; WIDE],
        peak: &mut [f32; WIDE],
    ) {
        for tile_row in tile.iter().take(valid) {
            for j in 0..WIDE {
                let x = scale * tile_row[j] - shift[j];
                peak[j] = peak[j].max(x);
                sum[j] += exp_clamped(x);
            }
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
    fn wide(self, rows: &[f32], queries: &[f32], dim: usize) -> WideTile {
        let (rows, queries) = (&rows[..dim * MR], &queries[..dim * WIDE]);
        let mut acc = [[0.0f32; WIDE]; MR];
        for k in 0..dim {
            let q = &queries[k * WIDE..(k + 1) * WIDE];
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let x = rows[k * MR + i];
                for (a, &qj) in acc_row.iter_mut().zip(q) {
                    *a += x * qj;
                }
            }
        }
        acc
    }

    #[inline(always)]
    fn narrow(self, rows: &[f32], queries: &[f32], dim: usize) -> NarrowTile {
        let (rows, queries) = (&rows[..2 * dim * MR], &queries[..dim * NARROW]);
        let mut acc = [[0.0f32; NARROW]; 2 * MR];
        for k in 0..dim {
            let q = &queries[k * NARROW..(k + 1) * NARROW];
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let x = rows[(i / MR) * dim * MR + k * MR + i % MR];
                for (a, &qj) in acc_row.iter_mut().zip(q) {
                    *a += x * qj;
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
        fn wide(self, rows: &[f32], queries: &[f32], dim: usize) -> WideTile {
            assert!(rows.len() >= dim * MR && queries.len() >= dim * WIDE, "tile operands too short");
            let mut out = [[0.0f32; WIDE]; MR];
            // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; the loads read
            // `rows[k * MR + i]` (i < MR) and `queries[k * WIDE..][..16]` for k < dim, in bounds
            // by the assert; the stores write the 16 floats of each `out` row.
            unsafe {
                let (mut r, mut q) = (rows.as_ptr(), queries.as_ptr());
                let mut acc = [[_mm256_setzero_ps(); 2]; MR];
                // Unrolled by four: the loop counter and pointer updates cost a quarter as much.
                for _ in 0..dim / 4 {
                    for u in 0..4 {
                        wide_step(&mut acc, r.add(u * MR), q.add(u * WIDE));
                    }
                    r = r.add(4 * MR);
                    q = q.add(4 * WIDE);
                }
                for u in 0..dim % 4 {
                    wide_step(&mut acc, r.add(u * MR), q.add(u * WIDE));
                }
                for (out_row, acc_row) in out.iter_mut().zip(&acc) {
                    _mm256_storeu_ps(out_row.as_mut_ptr(), acc_row[0]);
                    _mm256_storeu_ps(out_row.as_mut_ptr().add(8), acc_row[1]);
                }
            }
            out
        }

        #[inline(always)]
        fn narrow(self, rows: &[f32], queries: &[f32], dim: usize) -> NarrowTile {
            assert!(rows.len() >= 2 * dim * MR && queries.len() >= dim * NARROW, "tile operands too short");
            let mut out = [[0.0f32; NARROW]; 2 * MR];
            // SAFETY: as in `wide`; the loads read `rows[k * MR + i]` and
            // `rows[dim * MR + k * MR + i]` (i < MR) and `queries[k * 8..][..8]` for k < dim.
            unsafe {
                let (mut first, mut second, mut q) =
                    (rows.as_ptr(), rows.as_ptr().add(dim * MR), queries.as_ptr());
                let mut acc = [_mm256_setzero_ps(); 2 * MR];
                for _ in 0..dim {
                    let qv = _mm256_loadu_ps(q);
                    for i in 0..MR {
                        acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(&*first.add(i)), qv, acc[i]);
                        acc[MR + i] = _mm256_fmadd_ps(_mm256_broadcast_ss(&*second.add(i)), qv, acc[MR + i]);
                    }
                    first = first.add(MR);
                    second = second.add(MR);
                    q = q.add(NARROW);
                }
                for (out_row, a) in out.iter_mut().zip(&acc) {
                    _mm256_storeu_ps(out_row.as_mut_ptr(), *a);
                }
            }
            out
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

        #[inline(always)]
        fn exp_sums(
            self,
            tile: &WideTile,
            valid: usize,
            scale: f32,
            shift: &[f32; WIDE],
            sum: &mut [f32; WIDE],
            peak: &mut [f32; WIDE],
        ) {
            // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; every load and
            // store touches floats `0..8` or `8..16` of a 16-float array.
            unsafe {
                let scale = _mm256_set1_ps(scale);
                for half in [0, 8] {
                    let shift = _mm256_loadu_ps(shift.as_ptr().add(half));
                    let mut s = _mm256_loadu_ps(sum.as_ptr().add(half));
                    let mut p = _mm256_loadu_ps(peak.as_ptr().add(half));
                    for tile_row in tile.iter().take(valid) {
                        let x = _mm256_fmsub_ps(scale, _mm256_loadu_ps(tile_row.as_ptr().add(half)), shift);
                        p = _mm256_max_ps(p, x);
                        s = _mm256_add_ps(s, exp8(x));
                    }
                    _mm256_storeu_ps(sum.as_mut_ptr().add(half), s);
                    _mm256_storeu_ps(peak.as_mut_ptr().add(half), p);
                }
            }
        }
    }

    /// One `k` of the wide tile: `MR` rows at `r` times the 16 queries at `q`.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; `r[..MR]` and `q[..16]` must be readable.
    #[inline(always)]
    unsafe fn wide_step(acc: &mut [[__m256; 2]; MR], r: *const f32, q: *const f32) {
        // SAFETY: the caller's contract.
        unsafe {
            let q0 = _mm256_loadu_ps(q);
            let q1 = _mm256_loadu_ps(q.add(8));
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*r.add(i));
                acc_row[0] = _mm256_fmadd_ps(x, q0, acc_row[0]);
                acc_row[1] = _mm256_fmadd_ps(x, q1, acc_row[1]);
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
mod tests {
    use super::super::packing::{PackedBank, PackedQueries};
    use super::*;

    fn random(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn exp_matches_std_over_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (got, want) = (f64::from(exp_clamped(x)), f64::from(x).exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert!(exp_clamped(f32::NAN).is_nan());
    }

    /// Every kernel's tiles against f64 dot products, with a dimension that is not a multiple of
    /// four and fewer queries than lanes (the padding lanes must stay zero).
    fn check_tiles<K: TileKernel>(kernel: K) {
        let (dim, rows_n, queries_n) = (37, 2 * MR - 1, 5);
        let rows = random(rows_n * dim, 1);
        let queries = random(queries_n * dim, 2);
        let bank = PackedBank::new(&rows, 1, rows_n, dim);
        let dot = |i: usize, j: usize| -> f64 {
            rows[i * dim..(i + 1) * dim]
                .iter()
                .zip(&queries[j * dim..(j + 1) * dim])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum()
        };
        let wide = kernel.wide(
            bank.blocks(0, 0, 1),
            PackedQueries::new(queries.chunks(dim), dim, WIDE).block(0),
            dim,
        );
        let narrow = kernel.narrow(
            bank.blocks(0, 0, 2),
            PackedQueries::new(queries.chunks(dim), dim, NARROW).block(0),
            dim,
        );
        for (i, tile_row) in wide.iter().enumerate() {
            for (j, &got) in tile_row.iter().enumerate().take(queries_n) {
                assert!((f64::from(got) - dot(i, j)).abs() < 1e-5, "wide ({i}, {j})");
            }
            assert!(tile_row[queries_n..].iter().all(|&x| x == 0.0));
        }
        for (i, tile_row) in narrow.iter().enumerate() {
            for (j, &got) in tile_row.iter().enumerate().take(queries_n) {
                let want = if i < rows_n { dot(i, j) } else { 0.0 };
                assert!((f64::from(got) - want).abs() < 1e-5, "narrow ({i}, {j})");
            }
        }
    }

    #[test]
    fn kernels_match_f64_dot_products() {
        check_tiles(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = Avx2Fma::detect() {
            check_tiles(kernel);
        }
    }

    #[test]
    fn exp_sums_agree_across_kernels() {
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = Avx2Fma::detect() {
            let values = random(MR * WIDE, 3);
            let mut tile = [[0.0f32; WIDE]; MR];
            for (t, &v) in tile.iter_mut().flatten().zip(&values) {
                *t = 200.0 * v;
            }
            tile[1][3] = f32::NAN;
            let shift: [f32; WIDE] = std::array::from_fn(|j| j as f32 - 8.0);
            let (mut sum_a, mut peak_a) = ([0.5f32; WIDE], [f32::NEG_INFINITY; WIDE]);
            let (mut sum_b, mut peak_b) = ([0.5f32; WIDE], [f32::NEG_INFINITY; WIDE]);
            Portable.exp_sums(&tile, MR - 1, 0.3, &shift, &mut sum_a, &mut peak_a);
            kernel.exp_sums(&tile, MR - 1, 0.3, &shift, &mut sum_b, &mut peak_b);
            for j in 0..WIDE {
                if j == 3 {
                    assert!(sum_a[j].is_nan() && sum_b[j].is_nan(), "NaN must reach the sum");
                } else {
                    assert!((sum_a[j] - sum_b[j]).abs() <= 1e-5 * sum_a[j], "lane {j}");
                    assert_eq!(peak_a[j], peak_b[j], "lane {j}");
                }
            }
        }
    }
}
