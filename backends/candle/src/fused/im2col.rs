//! The building blocks of the fused convolution (`conv.rs`): its geometry, im2col (patches to
//! columns), col2im (columns scattered back onto an image, summing overlaps), a checked wrapper
//! around `gemm`, and host access to candle tensors.

use candle_core::{bail, CpuStorage, DType, Device, Layout, Result, Storage, Tensor as CTensor};
use gemm::{gemm, Parallelism};

/// The shapes of one convolution: input `[n, ci, h, w]`, weight `[co, ci, k, k]`, output
/// `[n, co, ho, wo]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geometry {
    pub n: usize,
    pub ci: usize,
    pub h: usize,
    pub w: usize,
    pub co: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

/// Columns per gemm: samples are grouped until their output positions fill this many, so that
/// the layers with small images (where one sample gives few columns) still amortise packing
/// the weight over a wide product.
const TARGET_COLUMNS: usize = 256;
/// Largest im2col buffer a group may build (floats), to stay near the caches.
const MAX_COLUMN_FLOATS: usize = 1 << 20;

impl Geometry {
    /// The geometry of `x` `[n, ci, h, w]` convolved with `weight` `[co, ci, k, k]`.
    pub fn new(x: &[usize], weight: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, ci, h, w], &[co, wci, k, k2]) = (x, weight) else {
            bail!("fused conv2d: input {x:?} and weight {weight:?} must be rank 4")
        };
        if wci != ci || k != k2 || k == 0 || stride == 0 || k > h + 2 * pad || k > w + 2 * pad {
            bail!("fused conv2d: input {x:?}, weight {weight:?}, stride {stride}, padding {pad} do not fit")
        }
        let (ho, wo) = ((h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1);
        Ok(Geometry { n, ci, h, w, co, k, stride, pad, ho, wo })
    }

    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    pub fn patch(&self) -> usize {
        self.ci * self.k * self.k
    }

    /// Output positions per sample and channel.
    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// Floats of one input sample.
    pub fn image(&self) -> usize {
        self.ci * self.h * self.w
    }

    /// Samples per group (each group is one gemm).
    pub fn group(&self) -> usize {
        let by_width = TARGET_COLUMNS.div_ceil(self.positions().max(1));
        let by_memory = MAX_COLUMN_FLOATS / (self.patch() * self.positions()).max(1);
        by_width.min(by_memory).clamp(1, self.n.max(1))
    }

    /// The valid output range `[lo, hi)` along a dim of `size` inputs and `outs` outputs for
    /// kernel offset `offset`: the outputs whose input `o * stride + offset - pad` is inside.
    fn valid(&self, offset: usize, size: usize, outs: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(offset).div_ceil(self.stride).min(outs);
        // Inputs are inside while `o * stride + offset < size + pad`.
        let hi = (size + self.pad).saturating_sub(offset).div_ceil(self.stride).min(outs);
        (lo, hi.max(lo))
    }
}

/// im2col of `samples` consecutive images into `cols` `[patch, samples * positions]`: row
/// `(c, ki, kj)`, column `s * positions + oy * wo + ox` holds input
/// `[s, c, oy * stride + ki - pad, ox * stride + kj - pad]`, zero outside the image.
pub(super) fn im2col(g: &Geometry, samples: usize, images: &[f32], cols: &mut [f32]) {
    let (positions, image) = (g.positions(), g.image());
    let width = (samples * positions).max(1);
    for (row, col_row) in cols.chunks_exact_mut(width).take(g.patch()).enumerate() {
        let (c, ki, kj) = (row / (g.k * g.k), row / g.k % g.k, row % g.k);
        let (oy_lo, oy_hi) = g.valid(ki, g.h, g.ho);
        let (ox_lo, ox_hi) = g.valid(kj, g.w, g.wo);
        for (s, out) in col_row.chunks_exact_mut(positions).enumerate() {
            let plane = &images[s * image + c * g.h * g.w..][..g.h * g.w];
            for (oy, line) in out.chunks_exact_mut(g.wo).enumerate() {
                if oy < oy_lo || oy >= oy_hi {
                    line.fill(0.0);
                    continue;
                }
                let src = &plane[(oy * g.stride + ki - g.pad) * g.w..][..g.w];
                line[..ox_lo].fill(0.0);
                line[ox_hi..].fill(0.0);
                let first = ox_lo * g.stride + kj - g.pad;
                if g.stride == 1 {
                    line[ox_lo..ox_hi].copy_from_slice(&src[first..first + (ox_hi - ox_lo)]);
                } else {
                    for (dst, src) in line[ox_lo..ox_hi].iter_mut().zip(src[first..].iter().step_by(g.stride))
                    {
                        *dst = *src;
                    }
                }
            }
        }
    }
}

/// col2im: the inverse scatter of [`im2col`], adding every column entry onto the input position
/// it was read from. `images` must be zeroed by the caller. The loop order is fixed, so the sums
/// are the same on every run.
pub(super) fn col2im(g: &Geometry, samples: usize, cols: &[f32], images: &mut [f32]) {
    let (positions, image) = (g.positions(), g.image());
    let width = (samples * positions).max(1);
    for (row, col_row) in cols.chunks_exact(width).take(g.patch()).enumerate() {
        let (c, ki, kj) = (row / (g.k * g.k), row / g.k % g.k, row % g.k);
        let (oy_lo, oy_hi) = g.valid(ki, g.h, g.ho);
        let (ox_lo, ox_hi) = g.valid(kj, g.w, g.wo);
        for (s, grads) in col_row.chunks_exact(positions).enumerate() {
            let plane = &mut images[s * image + c * g.h * g.w..][..g.h * g.w];
            for oy in oy_lo..oy_hi {
                let dst = &mut plane[(oy * g.stride + ki - g.pad) * g.w..][..g.w];
                let line = &grads[oy * g.wo + ox_lo..oy * g.wo + ox_hi];
                let first = ox_lo * g.stride + kj - g.pad;
                if g.stride == 1 {
                    for (d, v) in dst[first..].iter_mut().zip(line) {
                        *d += *v;
                    }
                } else {
                    for (d, v) in dst[first..].iter_mut().step_by(g.stride).zip(line) {
                        *d += *v;
                    }
                }
            }
        }
    }
}

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(super) struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl Mat<'_> {
    /// Whether every element of a `rows` x `cols` matrix lies inside `data`.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `dst` `[m, n]` (row-major, contiguous) `= lhs * rhs`, or `+=` when `accumulate`; `lhs` is
/// `[m, depth]`, `rhs` `[depth, n]`. Single-threaded: the callers parallelise over samples.
pub(super) fn matmul(
    m: usize,
    n: usize,
    depth: usize,
    dst: &mut [f32],
    accumulate: bool,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
) -> Result<()> {
    if dst.len() < m * n || !lhs.fits(m, depth) || !rhs.fits(depth, n) {
        bail!("fused conv2d: matrix product {m}x{depth}x{n} out of its buffers")
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if depth == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return Ok(());
    }
    // SAFETY: the checks above keep every index gemm reads (`i * rs + j * cs` for the operands,
    // `i * n + j` for `dst`) inside its slice, and `dst` is borrowed mutably, so it does not
    // alias the operands.
    unsafe {
        gemm(
            m,
            n,
            depth,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
    Ok(())
}

/// Runs `f` on the `f32` host values of `t` (made contiguous first) on the CPU.
pub(super) fn with_host<R>(t: &CTensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    if !matches!(t.device(), Device::Cpu) || t.dtype() != DType::F32 {
        bail!("fused kernel needs an F32 CPU tensor, got {:?} on {:?}", t.dtype(), t.device())
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(storage) => f(cpu_values(storage, layout)?),
        _ => bail!("fused kernel needs a CPU tensor"),
    }
}

/// The `f32` values of a contiguous layout over `storage`.
pub(super) fn cpu_values<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else { bail!("fused kernel needs F32 values") };
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("fused kernel needs a contiguous tensor")
    };
    match values.get(start..end) {
        Some(values) => Ok(values),
        None => bail!("fused kernel: storage shorter than its layout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn col2im_is_the_adjoint_of_im2col() -> Result<()> {
        // <im2col(x), c> == <x, col2im(c)> for every geometry; stride 2 with padding exercises
        // the clipped ranges.
        for (h, w, k, stride, pad) in [(5, 4, 3, 1, 1), (6, 7, 3, 2, 1), (4, 4, 1, 2, 0), (3, 5, 5, 1, 2)] {
            let g = Geometry::new(&[2, 2, h, w], &[1, 2, k, k], stride, pad)?;
            let x: Vec<f32> = (0..2 * g.image()).map(|i| (i % 7) as f32 - 3.0).collect();
            let c: Vec<f32> = (0..g.patch() * 2 * g.positions()).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut cols = vec![f32::NAN; c.len()];
            im2col(&g, 2, &x, &mut cols);
            let mut back = vec![0.0; x.len()];
            col2im(&g, 2, &c, &mut back);
            let lhs: f32 = cols.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "h {h} w {w} k {k} stride {stride} pad {pad}");
        }
        Ok(())
    }
}
