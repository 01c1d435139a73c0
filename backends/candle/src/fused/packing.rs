//! The bank layout the tile kernels read: each class's rows in blocks of [`LANES`], each block
//! `[d][LANES]` (one row per vector lane), so every row load in the kernels' inner loop is one
//! contiguous vector.

use std::sync::Mutex;

use rayon::prelude::*;

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
        data.par_chunks_mut((blocks_per_class * block_len).max(1)).enumerate().for_each(|(class, out)| {
            let rows = &bank[class * capacity * dim..(class + 1) * capacity * dim];
            for (block, packed) in out.chunks_exact_mut(block_len.max(1)).enumerate() {
                let first = block * LANES;
                let valid = capacity.saturating_sub(first).min(LANES);
                if valid == 0 {
                    packed.fill(0.0);
                    continue;
                }
                let block_rows = &rows[first * dim..(first + valid) * dim];
                for (k, lanes) in packed.chunks_exact_mut(LANES).enumerate() {
                    for (i, lane) in lanes.iter_mut().enumerate() {
                        *lane = if i < valid { block_rows[i * dim + k] } else { 0.0 };
                    }
                }
            }
        });
        let row_sq_norms = bank.par_chunks(dim.max(1)).map(sq_norm).collect();
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
