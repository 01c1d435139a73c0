//! Per-class Gram matrices `X^T X` of a bank, the upper triangle only, mirrored at the end.
//!
//! Rows are taken in chunks that stay in L1, copied with their dimension padded to a multiple
//! of [`GRAM_ROWS`] plus [`GRAM_COLS`] zero columns (so a last tile of columns never reads past
//! a row); each tile of [`GRAM_ROWS`] by [`GRAM_COLS`] entries of the accumulator is loaded,
//! updated by every row of the chunk (vectors along the first index, broadcasts along the
//! second), and stored back.

use super::simd::{TileKernel, GRAM_COLS, GRAM_ROWS};

/// Rows per chunk: 64 rows of 134 floats (`d = 128` padded) are 34 KB.
const CHUNK_ROWS: usize = 64;

/// `[classes, dim, dim]`: `X_c^T X_c` over all `capacity` rows of each class of `bank`
/// (`[classes, capacity, dim]`).
pub(crate) fn class_gram(bank: &[f32], classes: usize, capacity: usize, dim: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; classes * dim * dim];
    if dim == 0 {
        return out;
    }
    super::pool::for_each_chunk_mut(&mut out, dim * dim, |class, gram| {
        let rows = &bank[class * capacity * dim..(class + 1) * capacity * dim];
        one_gram(rows, dim, gram);
    });
    out
}

fn one_gram(rows: &[f32], dim: usize, gram: &mut [f32]) {
    let padded = dim.div_ceil(GRAM_ROWS) * GRAM_ROWS;
    let stride = padded + GRAM_COLS;
    let mut acc = vec![0.0f32; stride * stride];
    let mut chunk = vec![0.0f32; CHUNK_ROWS * stride];
    for block in rows.chunks(CHUNK_ROWS * dim) {
        let count = block.len() / dim;
        for (row, padded_row) in block.chunks_exact(dim).zip(chunk.chunks_exact_mut(stride)) {
            padded_row[..dim].copy_from_slice(row);
        }
        accumulate(&chunk[..count * stride], count, padded, stride, &mut acc);
    }
    // acc[b][a] holds entry (a, b) for every a <= b; mirror it.
    for a in 0..dim {
        for b in a..dim {
            let value = acc[b * stride + a];
            gram[a * dim + b] = value;
            gram[b * dim + a] = value;
        }
    }
}

super::simd::dispatch_kernel! {
    /// Adds `chunk^T chunk` (`count` rows of `stride` floats, the first `padded` used) into
    /// `acc` (`[stride][stride]`, entry `(a, b)` at `acc[b][a]`) for every tile holding some
    /// `a <= b`.
    fn accumulate(chunk: &[f32], count: usize, padded: usize, stride: usize, acc: &mut [f32]) -> () =
        accumulate_with
}

#[inline(always)]
fn accumulate_with<K: TileKernel>(
    kernel: K,
    chunk: &[f32],
    count: usize,
    padded: usize,
    stride: usize,
    acc: &mut [f32],
) {
    for a in (0..padded).step_by(GRAM_ROWS) {
        // Tiles whose columns all lie below `a` hold only entries of the lower triangle.
        let first_col = a / GRAM_COLS * GRAM_COLS;
        for b in (first_col..padded).step_by(GRAM_COLS) {
            kernel.gram_tile(chunk, count, stride, a, b, acc);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fused::simd::Portable;

    #[test]
    fn gram_matches_f64_for_both_kernels() {
        let (classes, capacity, dim) = (2, 150, 37);
        let mut state = 7u32;
        let bank: Vec<f32> = (0..classes * capacity * dim)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect();
        let want = |class: usize, a: usize, b: usize| -> f64 {
            (0..capacity)
                .map(|r| {
                    let row = &bank[(class * capacity + r) * dim..];
                    f64::from(row[a]) * f64::from(row[b])
                })
                .sum()
        };
        let fused = class_gram(&bank, classes, capacity, dim);
        // The portable kernel on the same padded chunks.
        let padded = dim.div_ceil(GRAM_ROWS) * GRAM_ROWS;
        let stride = padded + GRAM_COLS;
        let rows: Vec<f32> = bank[..capacity * dim]
            .chunks_exact(dim)
            .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, stride - dim)))
            .collect();
        let mut portable = vec![0.0f32; stride * stride];
        accumulate_with(Portable, &rows, capacity, padded, stride, &mut portable);
        for class in 0..classes {
            for a in 0..dim {
                for b in 0..dim {
                    let got = f64::from(fused[(class * dim + a) * dim + b]);
                    assert!((got - want(class, a, b)).abs() < 1e-4, "class {class} ({a}, {b})");
                    if class == 0 && a <= b {
                        let got = f64::from(portable[b * stride + a]);
                        assert!((got - want(0, a, b)).abs() < 1e-4, "portable ({a}, {b})");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore = "timing, run by hand with --release"]
    fn gram_speed() {
        let (classes, capacity, dim) = (10, 1000, 128);
        let bank: Vec<f32> =
            (0..classes * capacity * dim).map(|i| ((i * 7919) % 1013) as f32 / 1013.0).collect();
        // The fastest of many repetitions: the VM's speed drifts, and the minimum is the
        // figure least disturbed by it.
        let mut best = f64::INFINITY;
        let mut sink = 0.0;
        for _ in 0..60 {
            let start = std::time::Instant::now();
            sink += super::class_gram(&bank, classes, capacity, dim)[5];
            best = best.min(start.elapsed().as_secs_f64());
        }
        // The upper triangle: about half of c s d^2 multiply-adds.
        let flop = (classes * capacity * dim * dim) as f64;
        println!(
            "class_gram: {:.2} ms (fastest of 60), {:.1} GFLOP/s on the upper triangle ({sink})",
            best * 1e3,
            flop / best / 1e9
        );
    }
}
