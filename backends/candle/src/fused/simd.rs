//! The tile kernel under both fused ops: `MR` bank rows against `NR` packed queries, with
//! AVX2 + FMA on x86_64 when the CPU has them (checked at run time) and portable code elsewhere.
//!
//! Queries are packed as `[d][NR]` blocks so the kernel broadcasts one bank value and multiplies
//! it into two 8-lane vectors of queries: 12 accumulators, no horizontal sums, no packing of the
//! (large) bank. Callers write their loops once, generic over [`TileKernel`], and enter them
//! through a `#[target_feature]` wrapper so the whole loop is compiled for the vector unit.

/// Bank rows per tile.
pub(crate) const MR: usize = 6;
/// Queries per tile (two AVX2 vectors).
pub(crate) const NR: usize = 16;

/// `tile[i][j]` = bank row `i` . query `j`.
pub(crate) type Tile = [[f32; NR]; MR];

/// Queries packed in blocks of [`NR`]: block `b` holds queries `b * NR ..` as `[d][NR]`, the
/// missing ones zero.
pub(crate) struct PackedQueries {
    data: Vec<f32>,
    /// Number of queries.
    pub len: usize,
    /// Squared norm of every query.
    pub sq_norms: Vec<f32>,
}

impl PackedQueries {
    /// Packs `rows` (each of length `dim`).
    pub fn new<'a>(rows: impl ExactSizeIterator<Item = &'a [f32]>, dim: usize) -> Self {
        let len = rows.len();
        let blocks = len.div_ceil(NR);
        let mut data = vec![0.0f32; blocks * dim * NR];
        let mut sq_norms = Vec::with_capacity(len);
        for (q, row) in rows.enumerate() {
            let (block, lane) = (q / NR, q % NR);
            let base = block * dim * NR + lane;
            for (k, &x) in row.iter().enumerate() {
                data[base + k * NR] = x;
            }
            sq_norms.push(row.iter().map(|x| x * x).sum());
        }
        PackedQueries { data, len, sq_norms }
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.len.div_ceil(NR)
    }

    /// Block `b`, `[d][NR]`.
    pub fn block(&self, b: usize, dim: usize) -> &[f32] {
        &self.data[b * dim * NR..(b + 1) * dim * NR]
    }
}

/// One tile product.
pub(crate) trait TileKernel: Copy {
    /// `out[i][j] = rows[i * dim..][..dim] . packed[k * NR + j]` over `k < dim`; `rows` holds
    /// `MR` rows, `packed` one block.
    fn tile(self, rows: &[f32], packed: &[f32], dim: usize) -> Tile;

    /// For the first `valid` rows `i` of `tile` and every lane `j`: with
    /// `x = scale * tile[i][j] - shift[j]`, adds `e^x` (by [`exp_clamped`]'s rules) to `sum[j]`
    /// and raises `peak[j]` to `x`.
    #[inline(always)]
    fn exp_sums(
        self,
        tile: &Tile,
        valid: usize,
        scale: f32,
        shift: &[f32; NR],
        sum: &mut [f32; NR],
        peak: &mut [f32; NR],
    ) {
        for tile_row in tile.iter().take(valid) {
            for j in 0..NR {
                let x = scale * tile_row[j] - shift[j];
                peak[j] = peak[j].max(x);
                sum[j] += exp_clamped(x);
            }
        }
    }
}

/// Plain Rust (autovectorized for the baseline target).
#[derive(Clone, Copy)]
pub(crate) struct Portable;

impl TileKernel for Portable {
    #[inline(always)]
    fn tile(self, rows: &[f32], packed: &[f32], dim: usize) -> Tile {
        let (rows, packed) = (&rows[..MR * dim], &packed[..dim * NR]);
        let mut acc = [[0.0f32; NR]; MR];
        for k in 0..dim {
            let q = &packed[k * NR..(k + 1) * NR];
            for (i, acc_row) in acc.iter_mut().enumerate() {
                let x = rows[i * dim + k];
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
impl TileKernel for Avx2Fma {
    #[inline(always)]
    fn tile(self, rows: &[f32], packed: &[f32], dim: usize) -> Tile {
        use std::arch::x86_64::*;
        assert!(rows.len() >= MR * dim && packed.len() >= dim * NR, "tile operands too short");
        let mut out = [[0.0f32; NR]; MR];
        // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; every load reads
        // `rows[i * dim + k]` (i < MR, k < dim) or `packed[k * NR .. k * NR + 16]` (k < dim),
        // in bounds by the assert above; the stores write the 16 floats of each `out` row.
        unsafe {
            let (r, p) = (rows.as_ptr(), packed.as_ptr());
            let mut acc = [[_mm256_setzero_ps(); 2]; MR];
            for k in 0..dim {
                let q0 = _mm256_loadu_ps(p.add(k * NR));
                let q1 = _mm256_loadu_ps(p.add(k * NR + 8));
                for (i, acc_row) in acc.iter_mut().enumerate() {
                    let x = _mm256_broadcast_ss(&*r.add(i * dim + k));
                    acc_row[0] = _mm256_fmadd_ps(x, q0, acc_row[0]);
                    acc_row[1] = _mm256_fmadd_ps(x, q1, acc_row[1]);
                }
            }
            for (out_row, acc_row) in out.iter_mut().zip(&acc) {
                _mm256_storeu_ps(out_row.as_mut_ptr(), acc_row[0]);
                _mm256_storeu_ps(out_row.as_mut_ptr().add(8), acc_row[1]);
            }
        }
        out
    }

    #[inline(always)]
    fn exp_sums(
        self,
        tile: &Tile,
        valid: usize,
        scale: f32,
        shift: &[f32; NR],
        sum: &mut [f32; NR],
        peak: &mut [f32; NR],
    ) {
        use std::arch::x86_64::*;
        // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; every load and store
        // touches floats `0..8` or `8..16` of a 16-float array.
        unsafe {
            let scale = _mm256_set1_ps(scale);
            for half in [0, 8] {
                let shift = _mm256_loadu_ps(shift.as_ptr().add(half));
                let mut s = _mm256_loadu_ps(sum.as_ptr().add(half));
                let mut p = _mm256_loadu_ps(peak.as_ptr().add(half));
                for tile_row in tile.iter().take(valid) {
                    let x = _mm256_fmsub_ps(scale, _mm256_loadu_ps(tile_row.as_ptr().add(half)), shift);
                    p = _mm256_max_ps(p, x);
                    s = _mm256_add_ps(s, self.exp8(x));
                }
                _mm256_storeu_ps(sum.as_mut_ptr().add(half), s);
                _mm256_storeu_ps(peak.as_mut_ptr().add(half), p);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Avx2Fma {
    /// [`exp_clamped`] on 8 lanes.
    #[inline(always)]
    fn exp8(self, x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        // SAFETY: an `Avx2Fma` exists only where the CPU has AVX2 and FMA; no memory access.
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
            let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
            _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
        }
    }
}

/// The tile of rows `first..first + MR` of `rows` (`n` rows of `dim`): read in place when all
/// `MR` exist, else from `pad` (zero rows after the last).
#[inline(always)]
pub(crate) fn tile_at<K: TileKernel>(
    kernel: K,
    rows: &[f32],
    n: usize,
    first: usize,
    packed: &[f32],
    dim: usize,
    pad: &mut [f32],
) -> Tile {
    if first + MR <= n {
        kernel.tile(&rows[first * dim..(first + MR) * dim], packed, dim)
    } else {
        let valid = (n - first) * dim;
        pad[..valid].copy_from_slice(&rows[first * dim..n * dim]);
        pad[valid..].fill(0.0);
        kernel.tile(pad, packed, dim)
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

    #[test]
    fn kernels_match_f64_dot_products() {
        let dim = 37;
        let rows = random(MR * dim, 1);
        let queries = random(11 * dim, 2);
        let packed = PackedQueries::new(queries.chunks(dim), dim);
        let check = |tile: Tile| {
            for (i, row) in rows.chunks(dim).enumerate() {
                for (j, query) in queries.chunks(dim).enumerate() {
                    let want: f64 = row.iter().zip(query).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                    assert!((f64::from(tile[i][j]) - want).abs() < 1e-5, "({i}, {j})");
                }
                assert!(tile[i][11..].iter().all(|&x| x == 0.0), "padding lanes must stay zero");
            }
        };
        check(Portable.tile(&rows, packed.block(0, dim), dim));
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = Avx2Fma::detect() {
            check(kernel.tile(&rows, packed.block(0, dim), dim));
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(kernel) = Avx2Fma::detect() {
            let values = random(MR * NR, 3);
            let mut tile = [[0.0f32; NR]; MR];
            for (t, &v) in tile.iter_mut().flatten().zip(&values) {
                *t = 200.0 * v;
            }
            tile[1][3] = f32::NAN;
            let shift: [f32; NR] = std::array::from_fn(|j| j as f32 - 8.0);
            let (mut sum_a, mut peak_a) = ([0.5f32; NR], [f32::NEG_INFINITY; NR]);
            let (mut sum_b, mut peak_b) = ([0.5f32; NR], [f32::NEG_INFINITY; NR]);
            Portable.exp_sums(&tile, MR - 1, 0.3, &shift, &mut sum_a, &mut peak_a);
            kernel.exp_sums(&tile, MR - 1, 0.3, &shift, &mut sum_b, &mut peak_b);
            for j in 0..NR {
                if j == 3 {
                    assert!(sum_a[j].is_nan() && sum_b[j].is_nan(), "NaN must reach the sum");
                } else {
                    assert!((sum_a[j] - sum_b[j]).abs() <= 1e-5 * sum_a[j], "lane {j}");
                    assert_eq!(peak_a[j], peak_b[j], "lane {j}");
                }
            }
        }
        let norms: Vec<f32> = queries.chunks(dim).map(|q| q.iter().map(|x| x * x).sum()).collect();
        assert_eq!(packed.sq_norms, norms);
    }
}
