//! Max and average pooling on the CPU as candle custom ops with their backward, for any kernel,
//! stride and padding (candle's own pooling backward fails when kernel != stride).
//!
//! Max pooling treats padding as minus infinity and routes each output's gradient to the first
//! maximum of its window in row-major order (PyTorch's choice on ties; a window of minus
//! infinities routes it to its first in-image element, as PyTorch does). The forward records
//! those positions for the backward, like PyTorch's `max_pool2d_with_indices`. Average pooling
//! counts the padding zeros in the mean (`count_include_pad = true`).
//!
//! Each plane is swept one input row and one kernel column at a time, so the inner loops run
//! along output rows instead of over tiny windows. Planes (`n * c` of them) are spread over
//! candle's barrier pool; each is reduced by one task in a fixed order, so results are the same
//! on every run.

use std::sync::OnceLock;

use candle_core::{bail, CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor as CTensor};

use super::im2col::{cpu_values, with_host};
use super::pool::for_each_chunk_mut;

/// Which reduction a [`FusedPool2d`] applies over each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// The maximum.
    Max,
    /// The mean, padding zeros included.
    Avg,
}

/// Marks an output whose window lies entirely in the padding: its gradient goes nowhere.
const NO_INDEX: u32 = u32::MAX;

/// Pooling over square `kernel` windows with `stride` and `padding` on `[n, c, h, w]`; one
/// value per application, since max pooling keeps its forward's argmax positions.
#[derive(Debug)]
pub(crate) struct FusedPool2d {
    kind: PoolKind,
    kernel: usize,
    stride: usize,
    padding: usize,
    /// Max pooling: each output's argmax as a flat index into its input plane.
    argmax: OnceLock<Vec<u32>>,
}

/// The shapes of one pooling: `planes` (`n * c`) input planes `h x w`, output planes `ho x wo`.
#[derive(Debug, Clone, Copy)]
struct Dims {
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

/// Planes per pool task: small images get several per task so a task is worth its hand-off.
fn planes_per_task(plane: usize) -> usize {
    (4096 / plane.max(1)).max(1)
}

impl FusedPool2d {
    /// A pooling op with a square `kernel` window, `stride` and `padding`.
    pub fn new(kind: PoolKind, kernel: usize, stride: usize, padding: usize) -> Self {
        FusedPool2d { kind, kernel, stride, padding, argmax: OnceLock::new() }
    }

    fn dims(&self, dims: &[usize]) -> Result<Dims> {
        let &[n, c, h, w] = dims else { bail!("fused pool2d: input {dims:?} must be rank 4") };
        let (k, p) = (self.kernel, self.padding);
        if k == 0 || self.stride == 0 || k > h + 2 * p || k > w + 2 * p {
            bail!("fused pool2d: kernel {k}, stride {}, padding {p} do not fit {dims:?}", self.stride)
        }
        if u32::try_from(h * w).map_or(true, |len| len == NO_INDEX) {
            bail!("fused pool2d: planes of {h} x {w} are too large for 32-bit indices")
        }
        let (ho, wo) = ((h + 2 * p - k) / self.stride + 1, (w + 2 * p - k) / self.stride + 1);
        Ok(Dims { planes: n * c, h, w, ho, wo })
    }

    /// The in-image rows (or columns) `[lo, hi)` of the window at output `o` along a dim of `size`.
    fn span(&self, o: usize, size: usize) -> (usize, usize) {
        let start = o * self.stride;
        let lo = start.saturating_sub(self.padding).min(size);
        let hi = (start + self.kernel).saturating_sub(self.padding).min(size);
        (lo, hi.max(lo))
    }

    /// For each kernel column `j` that some output of a row reads inside the image: the
    /// outputs `[lo, hi)` whose input column `o * stride + j - padding` lies in the image, and
    /// the input column of output `lo`.
    fn column_taps(&self, w: usize, wo: usize) -> Vec<(usize, usize, usize)> {
        let (s, p) = (self.stride, self.padding);
        (0..self.kernel)
            .filter_map(|j| {
                let lo = p.saturating_sub(j).div_ceil(s).min(wo);
                let hi = (w + p).saturating_sub(j).div_ceil(s).min(wo);
                (lo < hi).then(|| (lo, hi, lo * s + j - p))
            })
            .collect()
    }

    /// One plane of max pooling: values in `out`, argmax positions in `index`.
    fn max_plane(
        &self,
        plane: &[f32],
        d: Dims,
        taps: &[(usize, usize, usize)],
        out: &mut [f32],
        index: &mut [u32],
    ) {
        let rows = out.chunks_exact_mut(d.wo.max(1)).zip(index.chunks_exact_mut(d.wo.max(1)));
        for (oy, (line, line_index)) in rows.enumerate() {
            let (ylo, yhi) = self.span(oy, d.h);
            line.fill(f32::NEG_INFINITY);
            for (ox, i) in line_index.iter_mut().enumerate() {
                let (xlo, xhi) = self.span(ox, d.w);
                // The first in-image element keeps the gradient when nothing beats -inf.
                *i = if ylo < yhi && xlo < xhi { (ylo * d.w + xlo) as u32 } else { NO_INDEX };
            }
            // Rows, then kernel columns: each window is visited in row-major order, so the
            // strict comparison keeps its first maximum.
            for y in ylo..yhi {
                let row = &plane[y * d.w..(y + 1) * d.w];
                for &(lo, hi, first) in taps {
                    let outs = line[lo..hi].iter_mut().zip(&mut line_index[lo..hi]);
                    for (t, (best, at)) in outs.enumerate() {
                        let x = first + t * self.stride;
                        let v = row[x];
                        // NaN wins, as in PyTorch.
                        if v > *best || v.is_nan() {
                            (*best, *at) = (v, (y * d.w + x) as u32);
                        }
                    }
                }
            }
        }
    }

    /// One plane of average pooling (padding zeros count in the mean).
    fn avg_plane(&self, plane: &[f32], d: Dims, taps: &[(usize, usize, usize)], out: &mut [f32]) {
        let area = (self.kernel * self.kernel) as f32;
        for (oy, line) in out.chunks_exact_mut(d.wo.max(1)).enumerate() {
            let (ylo, yhi) = self.span(oy, d.h);
            line.fill(0.0);
            for y in ylo..yhi {
                let row = &plane[y * d.w..(y + 1) * d.w];
                for &(lo, hi, first) in taps {
                    for (t, sum) in line[lo..hi].iter_mut().enumerate() {
                        *sum += row[first + t * self.stride];
                    }
                }
            }
            line.iter_mut().for_each(|v| *v /= area);
        }
    }

    /// The gradient of one input plane under average pooling: each output's share, `g / k^2`,
    /// added to every in-image element of its window.
    fn avg_plane_backward(&self, grad: &[f32], d: Dims, taps: &[(usize, usize, usize)], dx: &mut [f32]) {
        let area = (self.kernel * self.kernel) as f32;
        let mut shares = vec![0.0f32; d.wo];
        for (oy, line) in grad.chunks_exact(d.wo.max(1)).enumerate() {
            shares.iter_mut().zip(line).for_each(|(s, g)| *s = g / area);
            let (ylo, yhi) = self.span(oy, d.h);
            for y in ylo..yhi {
                let row = &mut dx[y * d.w..(y + 1) * d.w];
                for &(lo, hi, first) in taps {
                    for (t, share) in shares[lo..hi].iter().enumerate() {
                        row[first + t * self.stride] += share;
                    }
                }
            }
        }
    }
}

impl CustomOp1 for FusedPool2d {
    fn name(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "fused-max-pool2d",
            PoolKind::Avg => "fused-avg-pool2d",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(layout.dims())?;
        let x = cpu_values(storage, layout)?;
        let (per, taps) = (planes_per_task(d.h * d.w), self.column_taps(d.w, d.wo));
        let (plane_in, plane_out) = (d.h * d.w, d.ho * d.wo);
        let mut out = vec![0.0f32; d.planes * plane_out];
        let mut index = vec![0u32; if self.kind == PoolKind::Max { out.len() } else { 0 }];
        // One job per run of `per` planes: its outputs and, for max pooling, its indices.
        let mut jobs: Vec<(&mut [f32], &mut [u32])> = match self.kind {
            PoolKind::Max => out.chunks_mut(per * plane_out).zip(index.chunks_mut(per * plane_out)).collect(),
            PoolKind::Avg => out.chunks_mut(per * plane_out).map(|o| (o, &mut [][..])).collect(),
        };
        for_each_chunk_mut(&mut jobs, 1, |t, job| {
            for (out, index) in job.iter_mut() {
                for (i, dst) in out.chunks_exact_mut(plane_out).enumerate() {
                    let plane = &x[(t * per + i) * plane_in..][..plane_in];
                    match self.kind {
                        PoolKind::Max => {
                            let index = &mut index[i * plane_out..(i + 1) * plane_out];
                            self.max_plane(plane, d, &taps, dst, index);
                        }
                        PoolKind::Avg => self.avg_plane(plane, d, &taps, dst),
                    }
                }
            }
        });
        drop(jobs);
        if self.kind == PoolKind::Max && self.argmax.set(index).is_err() {
            bail!("fused max-pool2d: an op value must be applied once")
        }
        let &[n, c, ..] = layout.dims() else { bail!("fused pool2d: input must be rank 4") };
        Ok((CpuStorage::F32(out), Shape::from((n, c, d.ho, d.wo))))
    }

    fn bwd(&self, arg: &CTensor, _res: &CTensor, grad: &CTensor) -> Result<Option<CTensor>> {
        let d = self.dims(arg.dims())?;
        if grad.dims() != [arg.dims()[0], arg.dims()[1], d.ho, d.wo] {
            bail!("fused pool2d backward: gradient {:?} does not match the output", grad.dims())
        }
        let (plane_in, plane_out) = (d.h * d.w, d.ho * d.wo);
        let argmax = match self.kind {
            PoolKind::Max => match self.argmax.get() {
                Some(argmax) if argmax.len() == d.planes * plane_out => argmax.as_slice(),
                _ => bail!("fused max-pool2d backward: no recorded forward"),
            },
            PoolKind::Avg => &[],
        };
        let dx = with_host(grad, |gv| {
            let mut dx = vec![0.0f32; d.planes * plane_in];
            let (per, taps) = (planes_per_task(plane_in), self.column_taps(d.w, d.wo));
            for_each_chunk_mut(&mut dx, (per * plane_in).max(1), |t, chunk| {
                for (i, dst) in chunk.chunks_exact_mut(plane_in.max(1)).enumerate() {
                    let p = t * per + i;
                    let g = &gv[p * plane_out..(p + 1) * plane_out];
                    match self.kind {
                        PoolKind::Max => {
                            for (&g, &at) in g.iter().zip(&argmax[p * plane_out..(p + 1) * plane_out]) {
                                if let Some(slot) = dst.get_mut(at as usize) {
                                    *slot += g;
                                }
                            }
                        }
                        PoolKind::Avg => self.avg_plane_backward(g, d, &taps, dst),
                    }
                }
            });
            Ok(dx)
        })?;
        Ok(Some(CTensor::from_vec(dx, arg.dims(), &Device::Cpu)?))
    }
}
