//! Training-mode batch normalization on the CPU as one candle custom op with its backward.
//!
//! Composed from broadcast ops, a batch norm costs about fifteen passes over the activations
//! forward and as many backward, each allocating a full-size temporary; on candle's CPU that was
//! the bottleneck of a small CNN's training step. Here the forward is one statistics pass and one
//! normalizing pass, and the backward one pass for the two per-channel sums and one for `dx`:
//! - statistics per channel `c` over `(n, h, w)`, `m = n h w` values: the mean and the biased
//!   variance, accumulated in f64 around the channel's first value (a shift that keeps the
//!   one-pass variance from cancelling when the mean is large against the spread);
//! - forward: `y = (x - mean) * invstd * weight + bias` with `invstd = 1 / sqrt(var + eps)`;
//! - backward, with `xhat = (x - mean) * invstd`: `dbias = sum(dy)`,
//!   `dweight = sum(dy * xhat)` and `dx = weight * invstd / m * (m dy - dbias - xhat dweight)`.
//!
//! The statistics are computed once, before the op is applied, and travel with it: the caller
//! returns them as the detached batch statistics and the backward reuses them, so all three see
//! the same values. Reductions run one channel per task on candle's barrier pool, each in a
//! fixed order; the element-wise passes run over planes. Every run is bit-identical.
//!
//! The output keeps its recipe ([`BnRecipe`]: input, parameters, statistics), so that the ReLU
//! applied to it next, and a 2x2 max pooling after that, run as one op from the same input
//! ([`Act`]): a ReLU's backward is then a mask inside this op's backward rather than four
//! passes and a gradient buffer of candle's, and after the pooling only a quarter of the
//! gradient exists at all (each pooled gradient goes to its window's argmax).

use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

use candle_core::{bail, CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor as CTensor};

use super::im2col::{cpu_values, with_host};
use super::pool::{for_each_chunk_mut, map_ordered};

mod act;

pub(crate) use act::{batch_norm_train, BnRecipe};

/// Interleaved partial sums per reduction, so that the f64 accumulation vectorises; the order
/// of the additions depends on the shapes alone.
const LANES: usize = 8;

/// Largest plane of the pooled variant, whose argmax indices are 32-bit.
const MAX_PLANE: usize = u32::MAX as usize;

/// The batch statistics of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stats {
    /// The mean over `(n, h, w)`.
    pub mean: f64,
    /// The biased variance over `(n, h, w)`.
    pub var: f64,
}

/// The shapes of a batch norm: `n` samples of `c` planes of `h x w = hw` values.
#[derive(Debug, Clone, Copy)]
struct Dims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    hw: usize,
}

impl Dims {
    fn new(dims: &[usize]) -> Result<Self> {
        let &[n, c, h, w] = dims else { bail!("fused batch norm: input {dims:?} must be rank 4") };
        // At least two values per channel: the variance of one value says nothing, and empty
        // planes would leave nothing to split the work on.
        if n * h * w < 2 {
            bail!("fused batch norm: input {dims:?} needs at least two values per channel")
        }
        Ok(Dims { n, c, h, w, hw: h * w })
    }

    /// Values per output plane of the pooled variant (`h / 2` rows of `w / 2`).
    fn pooled(&self) -> usize {
        (self.h / 2) * (self.w / 2)
    }

    /// Values per channel.
    fn count(&self) -> f64 {
        (self.n * self.hw) as f64
    }

    /// Checks that `values` holds the whole input.
    fn check(&self, what: &str, values: &[f32]) -> Result<()> {
        if values.len() != self.n * self.c * self.hw {
            bail!("fused batch norm: {what} has {} values, not {self:?}", values.len())
        }
        Ok(())
    }

    /// The planes of channel `ch`, sample by sample.
    fn planes<'a>(&self, values: &'a [f32], ch: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let (c, hw) = (self.c, self.hw);
        (0..self.n).map(move |s| &values[(s * c + ch) * hw..][..hw])
    }

    /// Planes per element-wise task: small images get several per task so a task is worth its
    /// hand-off.
    fn planes_per_task(&self) -> usize {
        (8192 / self.hw.max(1)).max(1)
    }
}

/// Adds `f(a[i], b[i])` (two terms) over paired slices onto interleaved lanes.
fn fold_lanes(a: &[f32], b: &[f32], acc: &mut [[f64; LANES]; 2], f: impl Fn(f64, f64) -> (f64, f64)) {
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (ca, cb) in ca.zip(cb) {
        for l in 0..LANES {
            let (u, v) = f(f64::from(ca[l]), f64::from(cb[l]));
            acc[0][l] += u;
            acc[1][l] += v;
        }
    }
    for (l, (&x, &y)) in ta.iter().zip(tb).enumerate() {
        let (u, v) = f(f64::from(x), f64::from(y));
        acc[0][l] += u;
        acc[1][l] += v;
    }
}

fn lane_total(lanes: &[f64; LANES]) -> f64 {
    lanes.iter().sum()
}

/// The per-channel statistics of `x` `[n, c, h, w]` (contiguous).
fn channel_stats(x: &[f32], d: Dims) -> Result<Vec<Stats>> {
    d.check("input", x)?;
    let channels: Vec<usize> = (0..d.c).collect();
    Ok(map_ordered(&channels, |ch| {
        let shift = d.planes(x, ch).flatten().next().map_or(0.0, |&v| f64::from(v));
        let mut acc = [[0.0; LANES]; 2];
        for plane in d.planes(x, ch) {
            fold_lanes(plane, plane, &mut acc, |v, _| {
                let t = v - shift;
                (t, t * t)
            });
        }
        let (s1, s2, m) = (lane_total(&acc[0]), lane_total(&acc[1]), d.count());
        let mean = s1 / m;
        Stats { mean: shift + mean, var: (s2 / m - mean * mean).max(0.0) }
    }))
}

/// `f(plane, channel, out)` for every plane of `out` (`[n, c, ..]`, `plane` values each),
/// spread over the pool.
fn for_each_plane<T: Send>(out: &mut [T], d: Dims, plane: usize, f: impl Fn(usize, usize, &mut [T]) + Sync) {
    let per = d.planes_per_task();
    for_each_chunk_mut(out, (per * plane).max(1), |t, chunk| {
        for (i, dst) in chunk.chunks_exact_mut(plane.max(1)).enumerate() {
            let p = t * per + i;
            f(p, p % d.c.max(1), dst);
        }
    });
}

/// A vector of `n * c` planes of `plane` values with `f(plane, channel, out)` writing each,
/// spread over the pool like [`for_each_plane`], without zero-filling the memory first (the
/// activations are megabytes; the fill was a tenth of a training step's CPU time).
///
/// # Safety
///
/// `f` must initialize every element of each plane it is given, and must not panic.
unsafe fn collect_planes(
    d: Dims,
    plane: usize,
    f: impl Fn(usize, usize, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let len = d.n * d.c * plane;
    let mut out = Vec::with_capacity(len);
    for_each_plane(&mut out.spare_capacity_mut()[..len], d, plane, f);
    // SAFETY: the planes cover `..len` and the caller's `f` initialized every element of each.
    unsafe { out.set_len(len) };
    out
}

/// The f64 `mean` as two floats `[hi, lo]` with `hi + lo` within f32 rounding of `mean` at
/// the scale of `lo`: `(v - hi) - lo` ([`centred`]) is exact in its first subtraction when `v`
/// is near `hi` (Sterbenz), which is where a large mean would otherwise cancel digits away.
fn centre(mean: f64) -> [f32; 2] {
    let hi = mean as f32;
    [hi, (mean - f64::from(hi)) as f32]
}

/// `v - mean` in f32 with the mean split by [`centre`].
#[inline]
fn centred(v: f32, [hi, lo]: [f32; 2]) -> f32 {
    (v - hi) - lo
}

/// `(1 / sqrt(var + eps))` per channel.
fn inverse_std(stats: &[Stats], eps: f64) -> Vec<f64> {
    stats.iter().map(|s| 1.0 / (s.var + eps).sqrt()).collect()
}

/// What the op applies after the normalization `z = bn(x)`.
#[derive(Debug)]
enum Act {
    /// Nothing: `y = z`.
    Identity,
    /// ReLU: `y = max(z, 0)`.
    Relu,
    /// ReLU, then max pooling over 2x2 windows with stride 2 (a last odd row or column is
    /// dropped, as in floor mode): `[n, c, h / 2, w / 2]`. Each window's first maximum in
    /// row-major order is the argmax, recorded as an index into its input plane.
    ReluMaxPool2(OnceLock<Vec<u32>>),
}

/// The fused training batch norm, a [`CustomOp3`] on (input `[n, c, h, w]`, weight `[c]`,
/// bias `[c]`) with the input's statistics computed beforehand ([`batch_norm_train`]).
#[derive(Debug)]
struct FusedBatchNorm {
    eps: f64,
    stats: Arc<[Stats]>,
    act: Act,
}

impl FusedBatchNorm {
    /// The shapes of `x`, checked against the statistics and the `[c]` operands.
    fn dims(&self, x: &[usize], weight: &[usize], bias: &[usize]) -> Result<Dims> {
        let d = Dims::new(x)?;
        if weight != [d.c] || bias != [d.c] || self.stats.len() != d.c {
            bail!(
                "fused batch norm: input {x:?} needs weight and bias [c] and its statistics, got {weight:?}, {bias:?} and {}",
                self.stats.len()
            )
        }
        Ok(d)
    }
}

impl CustomOp3 for FusedBatchNorm {
    fn name(&self) -> &'static str {
        match self.act {
            Act::Identity => "fused-batch-norm-train",
            Act::Relu => "fused-batch-norm-relu-train",
            Act::ReluMaxPool2(_) => "fused-batch-norm-relu-max-pool2-train",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = self.dims(l1.dims(), l2.dims(), l3.dims())?;
        let (x, w, b) = (cpu_values(s1, l1)?, cpu_values(s2, l2)?, cpu_values(s3, l3)?);
        d.check("input", x)?;
        let invstd = inverse_std(&self.stats, self.eps);
        // Per channel: y = (x - mean) * scale + bias in f32 (twice the SIMD lanes of f64), the
        // mean split in two floats so that a large one still cancels exactly ([`centre`]).
        let coef: Vec<([f32; 2], f32, f32)> = (0..d.c)
            .map(|ch| (centre(self.stats[ch].mean), (invstd[ch] * f64::from(w[ch])) as f32, b[ch]))
            .collect();
        let normalize = |ch: usize, src: &[f32], dst: &mut [f32]| {
            let (mean, scale, shift) = coef[ch];
            for (y, &v) in dst.iter_mut().zip(src) {
                *y = centred(v, mean) * scale + shift;
            }
        };
        if let Act::ReluMaxPool2(argmax) = &self.act {
            let (out, index) = self.forward_pooled(d, x, normalize)?;
            if argmax.set(index).is_err() {
                bail!("fused batch norm: an op value must be applied once")
            }
            return Ok((CpuStorage::F32(out), Shape::from((d.n, d.c, d.h / 2, d.w / 2))));
        }
        let relu = matches!(self.act, Act::Relu);
        // SAFETY: every plane is `hw` long, as is its input, and the zip writes each element;
        // nothing in the closure can panic (the plane lies inside `x`, checked above).
        let out = unsafe {
            collect_planes(d, d.hw, |p, ch, dst| {
                let (mean, scale, shift) = coef[ch];
                for (y, &v) in dst.iter_mut().zip(&x[p * d.hw..][..d.hw]) {
                    let z = centred(v, mean) * scale + shift;
                    y.write(if relu { z.max(0.0) } else { z });
                }
            })
        };
        Ok((CpuStorage::F32(out), Shape::from(l1.dims())))
    }

    fn bwd(&self, x: &CTensor, w: &CTensor, b: &CTensor, res: &CTensor, grad: &CTensor) -> Result<Grads> {
        let d = self.dims(x.dims(), w.dims(), b.dims())?;
        if grad.dims() != res.dims() {
            bail!("fused batch norm backward: gradient {:?} does not match the output", grad.dims())
        }
        let need_x = x.track_op();
        let (dx, dw, db) = with_host(x, |xv| {
            with_host(w, |wv| {
                with_host(res, |rv| with_host(grad, |gv| self.backward(d, xv, wv, rv, gv, need_x)))
            })
        })?;
        let on_cpu = |values: Vec<f32>, shape: &[usize]| CTensor::from_vec(values, shape, &Device::Cpu);
        let dx = dx.map(|dx| on_cpu(dx, x.dims())).transpose()?;
        let dw = if w.track_op() { Some(on_cpu(dw, &[d.c])?) } else { None };
        let db = if b.track_op() { Some(on_cpu(db, &[d.c])?) } else { None };
        Ok((dx, dw, db))
    }
}

/// The gradients of the three operands, each where needed.
type Grads = (Option<CTensor>, Option<CTensor>, Option<CTensor>);
