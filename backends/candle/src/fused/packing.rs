//! The bank layout the tile kernels read: each class's rows in blocks of [`LANES`], each block
//! `[d][LANES]` (one row per vector lane), so every row load in the kernels' inner loop is one
//! contiguous vector.

use std::sync::Mutex;

use super::simd::{LANES, TILE_BLOCKS, TILE_ROWS};

/// The storage of the last dropped packed bank, kept for the next one: banks are rebuilt every
/// mini-batch, and fresh memory costs a page fault per 4 KB page (about as much as the packing
/// itself at C = 100). Holds at most one bank's worth.
static SPARE_STORAGE: Mutex<Vec<f32>> = Mutex::new(Vec::new());

/// A buffer of `len` floats with unspecified contents: the spare storage when there is one.
fn storage(len: usize) -> Vec<f32> {
    let mut data = SPARE_STORAGE.lock().map(|mut spare| std::mem::take(&mut *spare)).unwrap_or_default();
    data.resize(len, 0.0);
    data
}

/// A `[c, s, d]` bank repacked: each class's rows in blocks of [`LANES`], each block
/// `[d][LANES]`, rows past `s` zero and the class padded to whole tiles of [`TILE_BLOCKS`]
/// blocks; plus every row's squared norm. Built once per bank tensor and cached with it.
#[derive(Debug)]
pub(crate) struct PackedBank {
    data: Vec<f32>,
    /// Squared norm of every row, `[c * s]`.
    pub row_sq_norms: Vec<f32>,
    blocks_per_class: usize,
    dim: usize,
}

impl PackedBank {
    /// Packs `bank` (`classes * capacity` rows of `dim`).
    pub fn new(bank: &[f32], classes: usize, capacity: usize, dim: usize) -> Self {
        let blocks_per_class = capacity.div_ceil(TILE_ROWS) * TILE_BLOCKS;
        let block_len = dim * LANES;
        let mut data = storage(classes * blocks_per_class * block_len);
        // One class per task; each block reads its eight rows and writes contiguously, every
        // float (lanes past the class's rows, and whole blocks past them, are zero).
        super::pool::for_each_chunk_mut(&mut data, blocks_per_class * block_len, |class, out| {
            let rows = &bank[class * capacity * dim..(class + 1) * capacity * dim];
            for (block, packed) in out.chunks_exact_mut(block_len.max(1)).enumerate() {
                let first = block * LANES;
                let valid = capacity.saturating_sub(first).min(LANES);
                if valid == 0 {
                    packed.fill(0.0);
                    continue;
                }
                let block_rows = &rows[first * dim..(first + valid) * dim];
                if valid == LANES {
                    transpose_block(block_rows, dim, packed);
                    continue;
                }
                for (k, lanes) in packed.chunks_exact_mut(LANES).enumerate() {
                    for (i, lane) in lanes.iter_mut().enumerate() {
                        *lane = if i < valid { block_rows[i * dim + k] } else { 0.0 };
                    }
                }
            }
        });
        let mut row_sq_norms = vec![0.0f32; classes * capacity];
        super::pool::for_each_chunk_mut(&mut row_sq_norms, capacity, |class, norms| {
            let rows = bank[class * capacity * dim..(class + 1) * capacity * dim].chunks_exact(dim.max(1));
            norms.iter_mut().zip(rows).for_each(|(norm, row)| *norm = sq_norm(row));
        });
        PackedBank { data, row_sq_norms, blocks_per_class, dim }
    }

    /// The [`TILE_BLOCKS`] blocks of tile `tile` (rows `tile * TILE_ROWS..`) of class `class`,
    /// each `[d][LANES]`, back to back.
    pub fn tile_rows(&self, class: usize, tile: usize) -> &[f32] {
        let block_len = self.dim * LANES;
        let start = (class * self.blocks_per_class + tile * TILE_BLOCKS) * block_len;
        &self.data[start..start + TILE_BLOCKS * block_len]
    }
}

impl Drop for PackedBank {
    fn drop(&mut self) {
        if let Ok(mut spare) = SPARE_STORAGE.lock() {
            if self.data.capacity() >= spare.capacity() {
                *spare = std::mem::take(&mut self.data);
            }
        }
    }
}

/// Writes the [`LANES`] rows of `rows` (each `dim` long) as `packed[k * LANES + i] = rows[i][k]`.
/// The strided scalar reads of the plain loop made packing cost as much as a fifth of a
/// mini-batch at C = 10; AVX2 transposes 8 x 8 squares in registers instead.
fn transpose_block(rows: &[f32], dim: usize, packed: &mut [f32]) {
    assert!(rows.len() == LANES * dim && packed.len() == LANES * dim, "transpose_block: operand lengths");
    #[cfg(target_arch = "x86_64")]
    if super::simd::Avx2Fma::detect().is_some() {
        // SAFETY: the CPU has AVX2 (detected); lengths checked above.
        unsafe { avx2::transpose_block(rows, dim, packed) };
        return;
    }
    for (k, lanes) in packed.chunks_exact_mut(LANES).enumerate() {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = rows[i * dim + k];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::LANES;

    /// [`super::transpose_block`] with AVX2.
    ///
    /// # Safety
    /// The CPU must have AVX2; `rows` and `packed` must hold `LANES * dim` floats.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn transpose_block(rows: &[f32], dim: usize, packed: &mut [f32]) {
        let (src, dst) = (rows.as_ptr(), packed.as_mut_ptr());
        let squares = dim / LANES;
        for square in 0..squares {
            let k = square * LANES;
            // SAFETY: reads `rows[i * dim + k..][..8]` and writes `packed[(k + j) * 8..][..8]`
            // for i, j < 8 and k + 8 <= dim: in bounds by the caller's contract.
            unsafe {
                let r: [__m256; LANES] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * dim + k)));
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let columns = [
                    _mm256_permute2f128_ps::<0x20>(u0, u4),
                    _mm256_permute2f128_ps::<0x20>(u1, u5),
                    _mm256_permute2f128_ps::<0x20>(u2, u6),
                    _mm256_permute2f128_ps::<0x20>(u3, u7),
                    _mm256_permute2f128_ps::<0x31>(u0, u4),
                    _mm256_permute2f128_ps::<0x31>(u1, u5),
                    _mm256_permute2f128_ps::<0x31>(u2, u6),
                    _mm256_permute2f128_ps::<0x31>(u3, u7),
                ];
                for (j, column) in columns.iter().enumerate() {
                    _mm256_storeu_ps(dst.add((k + j) * LANES), *column);
                }
            }
        }
        for k in squares * LANES..dim {
            for i in 0..LANES {
                packed[k * LANES + i] = rows[i * dim + k];
            }
        }
    }
}

/// `|x|^2`, summed in eight lanes so it vectorizes.
pub(crate) fn sq_norm(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v * v;
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|v| v * v).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_blocks_hold_each_row_in_its_lane() {
        // Dimensions with and without a tail past whole 8 x 8 squares, classes with a partial
        // block and a whole padding block.
        for (classes, capacity, dim) in [(3usize, 21usize, 13usize), (2, 40, 128), (1, 8, 7), (2, 5, 24)] {
            let bank: Vec<f32> = (0..classes * capacity * dim).map(|i| (i as f32 * 0.37).sin()).collect();
            let packed = PackedBank::new(&bank, classes, capacity, dim);
            for class in 0..classes {
                for tile in 0..capacity.div_ceil(TILE_ROWS) {
                    let rows = packed.tile_rows(class, tile);
                    for row in 0..TILE_ROWS {
                        let (block, lane) = (row / LANES, row % LANES);
                        let r = tile * TILE_ROWS + row;
                        for k in 0..dim {
                            let want =
                                if r < capacity { bank[(class * capacity + r) * dim + k] } else { 0.0 };
                            let got = rows[block * dim * LANES + k * LANES + lane];
                            assert_eq!(
                                got, want,
                                "class {class} row {r} k {k} (c {classes} s {capacity} d {dim})"
                            );
                        }
                    }
                }
            }
        }
    }
}
