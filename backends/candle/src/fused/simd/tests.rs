//! The tile kernels against plain loops on random inputs.

use super::super::packing::PackedBank;
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
/// four and fewer rows than a tile (the padding rows must read zero).
fn check_tiles<K: TileKernel>(kernel: K) {
    let (dim, rows_n) = (37, TILE_ROWS - 5);
    let rows = random(rows_n * dim, 1);
    let queries = random(TILE_QUERIES * dim, 2);
    let bank = PackedBank::new(&rows, 1, rows_n, dim);
    let dot = |i: usize, j: usize| -> f64 {
        rows[i * dim..(i + 1) * dim]
            .iter()
            .zip(&queries[j * dim..(j + 1) * dim])
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum()
    };
    let query_rows: [&[f32]; TILE_QUERIES] = std::array::from_fn(|j| &queries[j * dim..(j + 1) * dim]);
    let tile = kernel.tile(bank.tile_rows(0, 0), query_rows, dim);
    for (j, tile_row) in tile.iter().enumerate() {
        for (i, &got) in tile_row.iter().enumerate() {
            let want = if i < rows_n { dot(i, j) } else { 0.0 };
            assert!((f64::from(got) - want).abs() < 1e-5, "({i}, {j})");
        }
    }
}

/// One- and two-query tiles against the four-query tile of the same queries.
fn check_narrow_tiles<K: TileKernel>(kernel: K) {
    for dim in [37, 128, 3] {
        let rows = random(TILE_ROWS * dim, 4);
        let queries = random(2 * dim, 5);
        let bank = PackedBank::new(&rows, 1, TILE_ROWS, dim);
        let (p, q) = (&queries[..dim], &queries[dim..]);
        let full = kernel.tile(bank.tile_rows(0, 0), [p, q, p, q], dim);
        let one = kernel.tile_narrow(bank.tile_rows(0, 0), &[q], dim);
        let two = kernel.tile_narrow(bank.tile_rows(0, 0), &[p, q], dim);
        for i in 0..TILE_ROWS {
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
            assert!(close(one[0][i], full[1][i]), "one query, dim {dim}, row {i}");
            assert!(close(two[0][i], full[0][i]) && close(two[1][i], full[1][i]), "two, dim {dim}, row {i}");
            assert!(one[1..].iter().chain(&two[2..]).all(|r| r[i] == 0.0), "unused rows are zero");
        }
    }
}

#[test]
fn narrow_tiles_match_the_four_query_tile() {
    check_narrow_tiles(Portable);
    #[cfg(target_arch = "x86_64")]
    if let Some(kernel) = Avx2Fma::detect() {
        check_narrow_tiles(kernel);
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
        let values = random(TILE_ROWS * TILE_QUERIES, 3);
        let mut tile = [[0.0f32; TILE_ROWS]; TILE_QUERIES];
        for (t, &v) in tile.iter_mut().flatten().zip(&values) {
            *t = 200.0 * v;
        }
        tile[1][3] = f32::NAN;
        let shift: [f32; TILE_QUERIES] = std::array::from_fn(|j| j as f32 - 2.0);
        // 11 valid rows: the second block is partly masked.
        for valid in [TILE_ROWS, 11] {
            let (mut sum_a, mut peak_a) =
                ([[0.5f32; LANES]; TILE_QUERIES], [[f32::NEG_INFINITY; LANES]; TILE_QUERIES]);
            let (mut sum_b, mut peak_b) = (sum_a, peak_a);
            Portable.exp_sums(&tile, valid, 0.3, &shift, &mut sum_a, &mut peak_a);
            kernel.exp_sums(&tile, valid, 0.3, &shift, &mut sum_b, &mut peak_b);
            for j in 0..TILE_QUERIES {
                for l in 0..LANES {
                    if (j, l) == (1, 3) {
                        assert!(sum_a[j][l].is_nan() && sum_b[j][l].is_nan(), "NaN must reach the sum");
                    } else {
                        assert!(
                            (sum_a[j][l] - sum_b[j][l]).abs() <= 1e-5 * sum_a[j][l],
                            "{valid}: ({j}, {l})"
                        );
                        // One rounding (fused multiply-subtract) against two.
                        let (a, b) = (peak_a[j][l], peak_b[j][l]);
                        assert!(a == b || (a - b).abs() <= 1e-6 * a.abs().max(1.0), "{valid}: ({j}, {l})");
                    }
                }
            }
        }
    }
}
