//! Memory layouts the tile kernels read: queries packed `[d][width]` per block, and the bank
//! repacked `[d][MR]` per block of [`MR`] rows, so every load in the kernels' inner loop is
//! contiguous.

use rayon::prelude::*;

use super::simd::MR;

/// Queries packed in blocks of `width` (8 or 16): block `b` holds queries `b * width ..` as
/// `[d][width]`, the missing ones zero.
pub(crate) struct PackedQueries {
    data: Vec<f32>,
    width: usize,
    dim: usize,
    /// Number of queries.
    pub len: usize,
    /// Squared norm of every query.
    pub sq_norms: Vec<f32>,
}

impl PackedQueries {
    /// Packs `rows` (each of length `dim`) in blocks of `width`.
    pub fn new<'a>(rows: impl ExactSizeIterator<Item = &'a [f32]>, dim: usize, width: usize) -> Self {
        let len = rows.len();
        let mut data = vec![0.0f32; len.div_ceil(width) * dim * width];
        let mut sq_norms = Vec::with_capacity(len);
        for (q, row) in rows.enumerate() {
            let base = (q / width) * dim * width + q % width;
            for (k, &x) in row.iter().enumerate() {
                data[base + k * width] = x;
            }
            sq_norms.push(sq_norm(row));
        }
        PackedQueries { data, width, dim, len, sq_norms }
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.len.div_ceil(self.width)
    }

    /// Queries per block.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Block `b`, `[d][width]`.
    pub fn block(&self, b: usize) -> &[f32] {
        let size = self.dim * self.width;
        &self.data[b * size..(b + 1) * size]
    }
}

/// A `[c, s, d]` bank repacked: each class's rows in blocks of [`MR`], each block `[d][MR]`
/// (rows past `s` zero), plus every row's squared norm. Built once per bank tensor and cached
/// with it.
#[derive(Debug)]
pub(crate) struct PackedBank {
    data: Vec<f32>,
    /// Squared norm of every row, `[c * s]`.
    pub row_sq_norms: Vec<f32>,
    blocks_per_class: usize,
    dim: usize,
}

impl PackedBank {
    /// Packs `bank` (`classes * capacity` rows of `dim`). Each class gets one spare zero block
    /// so two consecutive blocks can always be read together.
    pub fn new(bank: &[f32], classes: usize, capacity: usize, dim: usize) -> Self {
        let blocks_per_class = capacity.div_ceil(MR) + 1;
        let block_len = dim * MR;
        let mut data = vec![0.0f32; classes * blocks_per_class * block_len];
        // One class per task; within a block the writes stream and only its six rows are read.
        data.par_chunks_mut((blocks_per_class * block_len).max(1)).enumerate().for_each(|(class, out)| {
            let rows = &bank[class * capacity * dim..(class + 1) * capacity * dim];
            for (block, packed) in out.chunks_exact_mut(block_len.max(1)).enumerate() {
                let first = block * MR;
                let valid = capacity.saturating_sub(first).min(MR);
                for i in 0..valid {
                    let row = &rows[(first + i) * dim..(first + i + 1) * dim];
                    for (slot, &x) in packed[i..].iter_mut().step_by(MR).zip(row) {
                        *slot = x;
                    }
                }
            }
        });
        let row_sq_norms = bank.par_chunks(dim.max(1)).map(sq_norm).collect();
        PackedBank { data, row_sq_norms, blocks_per_class, dim }
    }

    /// Blocks `b..b + count` of class `class`, each `[d][MR]`, back to back.
    pub fn blocks(&self, class: usize, b: usize, count: usize) -> &[f32] {
        let start = (class * self.blocks_per_class + b) * self.dim * MR;
        &self.data[start..start + count * self.dim * MR]
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
