//! The fused batch norm's pooled forward, its backward for every [`Act`], and the recipe a
//! batch-norm output keeps for the ops fused after it.

use std::sync::{Arc, OnceLock};

use candle_core::{bail, Device, Result, Tensor as CTensor};

use super::{centre, centred, LANES, MAX_PLANE};
use super::{
    channel_stats, collect_planes, fold_lanes, inverse_std, lane_total, Act, Dims, FusedBatchNorm, Stats,
};
use crate::fused::im2col::with_host;
use crate::fused::pool::{for_each_chunk_mut, map_ordered};

/// Host gradients `(dx, dweight, dbias)`; `dx` only where needed.
type HostGrads = (Option<Vec<f32>>, Vec<f32>, Vec<f32>);

impl FusedBatchNorm {
    /// The 2x2, stride 2 max pooling of `max(z, 0)`, with `normalize(channel, row, out)`
    /// writing `z` for one input row, and each output's argmax in its input plane.
    pub(super) fn forward_pooled(
        &self,
        d: Dims,
        x: &[f32],
        normalize: impl Fn(usize, &[f32], &mut [f32]) + Sync,
    ) -> Result<(Vec<f32>, Vec<u32>)> {
        let (ho, wo, w) = (d.h / 2, d.w / 2, d.w);
        if ho == 0 || wo == 0 || d.hw > MAX_PLANE {
            bail!("fused batch norm: planes of {} x {} do not fit a 2x2 max pooling", d.h, d.w)
        }
        let (plane_out, per) = (ho * wo, d.planes_per_task());
        let mut out = vec![0.0f32; d.n * d.c * plane_out];
        let mut index = vec![0u32; out.len()];
        let mut jobs: Vec<(&mut [f32], &mut [u32])> =
            out.chunks_mut(per * plane_out).zip(index.chunks_mut(per * plane_out)).collect();
        for_each_chunk_mut(&mut jobs, 1, |t, job| {
            let mut rows = vec![0.0f32; 2 * w];
            for (out, index) in job.iter_mut() {
                let planes = out.chunks_exact_mut(plane_out).zip(index.chunks_exact_mut(plane_out));
                for (i, (dst, at)) in planes.enumerate() {
                    let p = t * per + i;
                    let plane = &x[p * d.hw..][..d.hw];
                    for oy in 0..ho {
                        let (top, bottom) = rows.split_at_mut(w);
                        normalize(p % d.c, &plane[2 * oy * w..][..w], top);
                        normalize(p % d.c, &plane[(2 * oy + 1) * w..][..w], bottom);
                        let line =
                            dst[oy * wo..(oy + 1) * wo].iter_mut().zip(&mut at[oy * wo..(oy + 1) * wo]);
                        for (ox, (best, at)) in line.enumerate() {
                            // The first maximum in row-major order: ties keep the earlier of
                            // each pair, then the top pair. Selects, not branches, which random
                            // data would mispredict.
                            let relu = |v: f32| v.max(0.0);
                            let (a, b) = (relu(top[2 * ox]), relu(top[2 * ox + 1]));
                            let (c, e) = (relu(bottom[2 * ox]), relu(bottom[2 * ox + 1]));
                            let (upper, i_upper) = if b > a { (b, 1) } else { (a, 0) };
                            let (lower, i_lower) = if e > c { (e, w + 1) } else { (c, w) };
                            let (value, offset) =
                                if lower > upper { (lower, i_lower) } else { (upper, i_upper) };
                            (*best, *at) = (value, (2 * oy * w + 2 * ox + offset) as u32);
                        }
                    }
                }
            }
        });
        drop(jobs);
        Ok((out, index))
    }

    /// `(dx, dweight, dbias)` for the gradient `grad` of the output `res`; `dx` only when
    /// `need_x`. The gradient reaching the normalization is `grad` itself, `grad` where
    /// `res > 0` (ReLU), or each pooled `grad` at its argmax where `res > 0`.
    pub(super) fn backward(
        &self,
        d: Dims,
        x: &[f32],
        w: &[f32],
        res: &[f32],
        grad: &[f32],
        need_x: bool,
    ) -> Result<HostGrads> {
        d.check("input", x)?;
        let out_plane = if matches!(self.act, Act::ReluMaxPool2(_)) { d.pooled() } else { d.hw };
        if res.len() != d.n * d.c * out_plane || grad.len() != res.len() || w.len() != d.c {
            bail!("fused batch norm backward: buffers do not match {d:?}")
        }
        let argmax: &[u32] = match &self.act {
            Act::ReluMaxPool2(argmax) => match argmax.get() {
                Some(argmax) if argmax.len() == res.len() => argmax,
                _ => bail!("fused batch norm backward: no recorded forward"),
            },
            _ => &[],
        };
        let invstd = inverse_std(&self.stats, self.eps);
        let hw = d.hw;
        // The pooled plane `p`: (output gradient, output, argmax) per output.
        let pooled = |p: usize| {
            let range = p * out_plane..(p + 1) * out_plane;
            grad[range.clone()].iter().zip(&res[range.clone()]).zip(&argmax[range])
        };
        let channels: Vec<usize> = (0..d.c).collect();
        // Per channel: (sum(dy), sum(dy * xhat)).
        let sums = map_ordered(&channels, |ch| {
            let mean = self.stats[ch].mean;
            let mut acc = [[0.0; LANES]; 2];
            let mut dy = vec![0.0f32; if matches!(self.act, Act::Relu) { hw } else { 0 }];
            for p in (0..d.n).map(|s| s * d.c + ch) {
                let xp = &x[p * hw..][..hw];
                match self.act {
                    Act::Identity => {
                        fold_lanes(xp, &grad[p * hw..][..hw], &mut acc, |v, g| (g, g * (v - mean)))
                    }
                    Act::Relu => {
                        mask(&grad[p * hw..][..hw], &res[p * hw..][..hw], &mut dy);
                        fold_lanes(xp, &dy, &mut acc, |v, g| (g, g * (v - mean)));
                    }
                    Act::ReluMaxPool2(_) => {
                        for (o, ((&g, &r), &at)) in pooled(p).enumerate() {
                            if let (true, Some(&v)) = (r > 0.0, xp.get(at as usize)) {
                                let g = f64::from(g);
                                acc[0][o % LANES] += g;
                                acc[1][o % LANES] += g * (f64::from(v) - mean);
                            }
                        }
                    }
                }
            }
            (lane_total(&acc[0]), lane_total(&acc[1]) * invstd[ch])
        });
        if sums.len() != d.c {
            bail!("fused batch norm backward: a channel's reduction did not run")
        }
        let dx = need_x.then(|| {
            let m = d.count();
            // dx = k (dy - dbias / m - (x - mean) * invstd * dweight / m), k = weight * invstd.
            // In f32 like the forward (see `centre`).
            let coef: Vec<(f32, f32, [f32; 2], f32)> = (0..d.c)
                .map(|ch| {
                    let (dbias, dweight) = sums[ch];
                    let k = f64::from(w[ch]) * invstd[ch];
                    (
                        k as f32,
                        (dbias / m) as f32,
                        centre(self.stats[ch].mean),
                        (invstd[ch] * dweight / m) as f32,
                    )
                })
                .collect();
            // SAFETY: every branch writes each element of the `hw`-long plane (the pooled one
            // all of them first, then those at the argmaxes again); the planes lie inside `x`,
            // `grad` and `res`, whose lengths were checked above, and `get` guards the argmaxes.
            unsafe {
                collect_planes(d, hw, |p, ch, dst| {
                    let (k, mean_dy, mean, cx) = coef[ch];
                    let value = |v: f32, g: f32| k * (g - mean_dy - centred(v, mean) * cx);
                    let xp = &x[p * hw..][..hw];
                    match self.act {
                        Act::Identity => {
                            let gp = &grad[p * hw..][..hw];
                            dst.iter_mut().zip(xp).zip(gp).for_each(|((out, &v), &g)| {
                                out.write(value(v, g));
                            });
                        }
                        Act::Relu => {
                            let (gp, rp) = (&grad[p * hw..][..hw], &res[p * hw..][..hw]);
                            for (((out, &v), &g), &r) in dst.iter_mut().zip(xp).zip(gp).zip(rp) {
                                out.write(value(v, if r > 0.0 { g } else { 0.0 }));
                            }
                        }
                        Act::ReluMaxPool2(_) => {
                            dst.iter_mut().zip(xp).for_each(|(out, &v)| {
                                out.write(value(v, 0.0));
                            });
                            for ((&g, &r), &at) in pooled(p) {
                                let (out, v) = (dst.get_mut(at as usize), xp.get(at as usize));
                                if let (true, Some(out), Some(&v)) = (r > 0.0, out, v) {
                                    out.write(value(v, g));
                                }
                            }
                        }
                    }
                })
            }
        });
        let dw = sums.iter().map(|&(_, dw)| dw as f32).collect();
        let db = sums.iter().map(|&(db, _)| db as f32).collect();
        Ok((dx, dw, db))
    }
}

/// `dy = grad` where `res > 0`, else 0.
fn mask(grad: &[f32], res: &[f32], dy: &mut [f32]) {
    for ((d, &g), &r) in dy.iter_mut().zip(grad).zip(res) {
        *d = if r > 0.0 { g } else { 0.0 };
    }
}

/// How a fused batch-norm output was made, kept with it so that a ReLU applied to it, and a
/// 2x2 max pooling after that, run as one op from the same input and statistics.
#[derive(Debug, Clone)]
pub(crate) struct BnRecipe {
    x: CTensor,
    weight: CTensor,
    bias: CTensor,
    eps: f64,
    stats: Arc<[Stats]>,
    /// Whether the output is ReLU'd.
    relu: bool,
}

impl BnRecipe {
    fn apply(&self, act: Act) -> Result<CTensor> {
        let op = FusedBatchNorm { eps: self.eps, stats: Arc::clone(&self.stats), act };
        self.x.apply_op3(&self.weight, &self.bias, op)
    }

    /// The ReLU of the output as one op from the input, and its recipe; `None` when the output
    /// is ReLU'd already.
    pub fn relu(&self) -> Option<Result<(CTensor, BnRecipe)>> {
        if self.relu {
            return None;
        }
        Some(self.apply(Act::Relu).map(|out| (out, BnRecipe { relu: true, ..self.clone() })))
    }

    /// The 2x2, stride 2 max pooling (no padding) of the ReLU'd output as one op from the
    /// input; `None` unless the output is ReLU'd and its planes are at least 2 x 2.
    pub fn max_pool2(&self) -> Option<Result<CTensor>> {
        let &[_, _, h, w] = self.x.dims() else { return None };
        if !self.relu || h < 2 || w < 2 || h * w > MAX_PLANE {
            return None;
        }
        Some(self.apply(Act::ReluMaxPool2(OnceLock::new())))
    }
}

/// Training-mode batch norm of `x` `[n, c, h, w]` (`f32` on the CPU, `n h w >= 2`) with
/// `weight` and `bias` `[c]`: the output, with gradients for all three, the detached batch
/// mean and biased variance `[c]`, and the output's recipe.
pub(crate) fn batch_norm_train(
    x: &CTensor,
    weight: &CTensor,
    bias: &CTensor,
    eps: f64,
) -> Result<(CTensor, CTensor, CTensor, BnRecipe)> {
    let x = x.contiguous()?;
    let d = Dims::new(x.dims())?;
    let stats: Arc<[Stats]> = with_host(&x, |xv| channel_stats(xv, d))?.into();
    let column = |f: fn(&Stats) -> f64| {
        CTensor::from_vec(stats.iter().map(|s| f(s) as f32).collect::<Vec<_>>(), d.c, &Device::Cpu)
    };
    let (mean, var) = (column(|s| s.mean)?, column(|s| s.var)?);
    let recipe =
        BnRecipe { x, weight: weight.contiguous()?, bias: bias.contiguous()?, eps, stats, relu: false };
    Ok((recipe.apply(Act::Identity)?, mean, var, recipe))
}
