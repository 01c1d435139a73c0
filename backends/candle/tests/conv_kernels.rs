//! The fused CPU convolution and pooling kernels of the candle backend against direct f64
//! references: forward values and the gradients with respect to every operand, on seeded random
//! inputs over strides, paddings, kernels, batch sizes and channel counts.

use hamos_api::{Backend, Result, Tensor, Window};
use hamos_candle::CandleBackend;

/// Relative tolerance, against the sum of the absolute terms of each reference entry (the scale
/// of f32 rounding in a sum).
const RTOL: f64 = 1e-4;

/// A small seeded generator (SplitMix64), so the tests need no random-number crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `len` values uniform in `[-1, 1)`, rounded to f32.
    fn values(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| (2.0 * self.next() - 1.0) as f32).collect()
    }
}

/// The convolution's shapes: input `[n, ci, h, w]`, weight `[co, ci, k, k]`.
#[derive(Debug, Clone, Copy)]
struct Conv {
    n: usize,
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// Calls `f(out_index, x_index, w_index)` for every multiply of the direct convolution (the
    /// 7 loops), skipping taps in the padding.
    fn each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = self.out();
        for b in 0..self.n {
            for o in 0..self.co {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let out = ((b * self.co + o) * ho + oy) * wo + ox;
                        for c in 0..self.ci {
                            for i in 0..self.k {
                                for j in 0..self.k {
                                    let (iy, ix) = (oy * self.stride + i, ox * self.stride + j);
                                    if iy < self.pad || ix < self.pad {
                                        continue;
                                    }
                                    let (iy, ix) = (iy - self.pad, ix - self.pad);
                                    if iy >= self.h || ix >= self.w {
                                        continue;
                                    }
                                    let xi = ((b * self.ci + c) * self.h + iy) * self.w + ix;
                                    let wi = ((o * self.ci + c) * self.k + i) * self.k + j;
                                    f(out, xi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Output, dx, dw, db of `sum(conv(x, w) + b) * g)` in f64.
    fn reference(&self, x: &[f64], w: &[f64], b: &[f64], g: &[f64]) -> [Vec<f64>; 4] {
        let mut out = vec![0.0; g.len()];
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
        self.each_tap(|oi, xi, wi| {
            out[oi] += x[xi] * w[wi];
            dx[xi] += g[oi] * w[wi];
            dw[wi] += g[oi] * x[xi];
        });
        let plane = out.len() / (self.n * self.co).max(1);
        for (i, (v, gv)) in out.iter_mut().zip(g).enumerate() {
            let o = i / plane % self.co;
            *v += b[o];
            db[o] += gv;
        }
        [out, dx, dw, db]
    }
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&v| f64::from(v)).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|v| v.abs()).collect()
}

/// Checks `got` against `want` entry by entry, within `RTOL` of `scale` (the absolute terms).
fn check(what: &str, got: &[f32], want: &[f64], scale: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (f64::from(g) - w).abs();
        // Equal infinities (max pooling over -inf) have a NaN difference.
        assert!(f64::from(g) == w || err <= RTOL * s + 1e-6, "{what}[{i}]: got {g}, want {w} (scale {s})");
    }
}

fn conv_case(backend: &CandleBackend, rng: &mut Rng, c: Conv, bias: bool) -> Result<()> {
    let (ho, wo) = c.out();
    let x = rng.values(c.n * c.ci * c.h * c.w);
    let w = rng.values(c.co * c.ci * c.k * c.k);
    let b = if bias { rng.values(c.co) } else { vec![0.0; c.co] };
    let g = rng.values(c.n * c.co * ho * wo);
    let vx = backend.variable(&backend.from_f32(&x, &[c.n, c.ci, c.h, c.w])?)?;
    let vw = backend.variable(&backend.from_f32(&w, &[c.co, c.ci, c.k, c.k])?)?;
    let vb = backend.variable(&backend.from_f32(&b, &[c.co])?)?;
    let out = vx.conv2d(&vw, bias.then_some(&vb), c.stride, c.pad)?;
    assert_eq!(out.dims(), [c.n, c.co, ho, wo], "{c:?}");
    let loss = out.mul(&backend.from_f32(&g, &[c.n, c.co, ho, wo])?)?.sum_all()?;
    let grads = loss.gradients(&[&vx, &vw, &vb])?;
    let (x, w, b, g) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&g));
    let want = c.reference(&x, &w, &b, &g);
    let scale = c.reference(&abs(&x), &abs(&w), &abs(&b), &abs(&g));
    check(&format!("{c:?} out"), &out.to_vec_f32()?, &want[0], &scale[0]);
    check(&format!("{c:?} dx"), &grads[0].to_vec_f32()?, &want[1], &scale[1]);
    check(&format!("{c:?} dw"), &grads[1].to_vec_f32()?, &want[2], &scale[2]);
    if bias {
        check(&format!("{c:?} db"), &grads[2].to_vec_f32()?, &want[3], &scale[3]);
    }
    Ok(())
}

#[test]
fn conv2d_matches_the_direct_reference() -> Result<()> {
    let backend = CandleBackend::cpu();
    let mut rng = Rng(7);
    let mut cases = 0;
    for (n, ci, co) in [(1, 1, 1), (3, 2, 4), (2, 5, 3)] {
        for k in [1, 3, 5] {
            for stride in [1, 2] {
                for pad in [0, 1] {
                    let (h, w) = (7 + n, 6 + ci);
                    let c = Conv { n, ci, h, w, co, k, stride, pad };
                    conv_case(&backend, &mut rng, c, (n + k + stride + pad) % 2 == 0)?;
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 36);
    Ok(())
}

#[test]
fn conv2d_batches_spanning_several_groups_and_tasks() -> Result<()> {
    // Small images put several samples in one gemm and the batch over several tasks; the batch
    // size leaves a partial last group.
    let backend = CandleBackend::cpu();
    let mut rng = Rng(11);
    conv_case(&backend, &mut rng, Conv { n: 37, ci: 3, h: 4, w: 5, co: 6, k: 3, stride: 1, pad: 1 }, true)?;
    conv_case(&backend, &mut rng, Conv { n: 19, ci: 4, h: 9, w: 9, co: 5, k: 3, stride: 2, pad: 0 }, false)?;
    // Enough groups (two samples each) that every task, forward and backward, runs several.
    conv_case(&backend, &mut rng, Conv { n: 71, ci: 1, h: 14, w: 14, co: 2, k: 3, stride: 1, pad: 1 }, true)?;
    // Images of at least 256 output positions: one sample per gemm, written in place (with and
    // without a bias).
    conv_case(&backend, &mut rng, Conv { n: 3, ci: 1, h: 17, w: 16, co: 4, k: 3, stride: 1, pad: 1 }, true)?;
    conv_case(&backend, &mut rng, Conv { n: 2, ci: 2, h: 18, w: 17, co: 3, k: 3, stride: 1, pad: 0 }, false)?;
    // A kernel as large as the padded input: one output position.
    conv_case(&backend, &mut rng, Conv { n: 2, ci: 2, h: 3, w: 3, co: 2, k: 5, stride: 1, pad: 1 }, true)
}

#[test]
fn conv2d_gradients_of_constants_and_repeat_runs() -> Result<()> {
    let backend = CandleBackend::cpu();
    let mut rng = Rng(3);
    let x = backend.from_f32(&rng.values(4 * 3 * 8 * 8), &[4, 3, 8, 8])?;
    let w = backend.from_f32(&rng.values(5 * 3 * 3 * 3), &[5, 3, 3, 3])?;
    let b = backend.from_f32(&rng.values(5), &[5])?;
    // Only the weight is a variable: the input's gradient is not needed.
    let vw = backend.variable(&w)?;
    let run = |x: &Tensor| -> Result<(Vec<f32>, Vec<f32>)> {
        let out = x.conv2d(&vw, Some(&b), 2, 1)?;
        let grads = out.sqr()?.sum_all()?.gradients(&[&vw])?;
        Ok((out.to_vec_f32()?, grads[0].to_vec_f32()?))
    };
    let first = run(&x)?;
    for _ in 0..3 {
        assert_eq!(run(&x)?, first, "a second run must be bit-identical");
    }
    // A non-contiguous input (transposed twice in the spatial dims) gives the same result.
    let xt = backend.from_f32(&x.transpose(2, 3)?.to_vec_f32()?, &[4, 3, 8, 8])?.transpose(2, 3)?;
    assert_eq!(run(&xt)?, first);
    // Only the input is a variable.
    let vx = backend.variable(&x)?;
    let grads = vx.conv2d(&w, None, 1, 0)?.sum_all()?.gradients(&[&vx])?;
    assert_eq!(grads[0].dims(), [4, 3, 8, 8]);
    Ok(())
}

/// Pooling shapes: input `[n, c, h, w]`, a `k` window with `stride` and `pad`.
#[derive(Debug, Clone, Copy)]
struct Pool {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Pool {
    fn out(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.pad - self.k) / self.stride + 1,
            (self.w + 2 * self.pad - self.k) / self.stride + 1,
        )
    }

    /// Output and dx of `sum(pool(x) * g)`: max (first maximum of each window, padding never
    /// wins) or average (padding counts as zeros).
    fn reference(&self, max: bool, x: &[f64], g: &[f64]) -> [Vec<f64>; 2] {
        let (ho, wo) = self.out();
        let (mut out, mut dx) = (vec![0.0; g.len()], vec![0.0; x.len()]);
        for p in 0..self.n * self.c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let oi = (p * ho + oy) * wo + ox;
                    let mut inside = Vec::new();
                    for i in 0..self.k {
                        for j in 0..self.k {
                            let (iy, ix) = ((oy * self.stride + i) as isize, (ox * self.stride + j) as isize);
                            let (iy, ix) = (iy - self.pad as isize, ix - self.pad as isize);
                            if iy >= 0 && ix >= 0 && (iy as usize) < self.h && (ix as usize) < self.w {
                                inside.push((p * self.h + iy as usize) * self.w + ix as usize);
                            }
                        }
                    }
                    if max {
                        let mut best = inside[0];
                        for &i in &inside {
                            if x[i] > x[best] {
                                best = i;
                            }
                        }
                        out[oi] = x[best];
                        dx[best] += g[oi];
                    } else {
                        let area = (self.k * self.k) as f64;
                        out[oi] = inside.iter().map(|&i| x[i]).sum::<f64>() / area;
                        inside.iter().for_each(|&i| dx[i] += g[oi] / area);
                    }
                }
            }
        }
        [out, dx]
    }
}

fn pool_case(backend: &CandleBackend, x: &[f32], g: &[f32], p: Pool, max: bool) -> Result<()> {
    let vx = backend.variable(&backend.from_f32(x, &[p.n, p.c, p.h, p.w])?)?;
    let window = Window::new(p.k, p.stride).padded(p.pad);
    let out = if max { vx.inner().max_pool2d(window)? } else { vx.inner().avg_pool2d(window)? };
    let (ho, wo) = p.out();
    assert_eq!(out.dims(), [p.n, p.c, ho, wo], "{p:?}");
    let loss = out.mul(&backend.from_f32(g, &[p.n, p.c, ho, wo])?)?.sum_all()?;
    let dx = loss.gradients(&[&vx])?.remove(0);
    let (x, g) = (to_f64(x), to_f64(g));
    let want = p.reference(max, &x, &g);
    let scale = p.reference(max, &abs(&x), &abs(&g));
    let kind = if max { "max" } else { "avg" };
    // Max pooling picks, it does not sum: the values must be exact.
    let exact = [vec![0.0; want[0].len()], vec![0.0; want[1].len()]];
    let scale = if max { &exact } else { &scale };
    check(&format!("{kind} {p:?} out"), &out.to_vec_f32()?, &want[0], &scale[0]);
    check(&format!("{kind} {p:?} dx"), &dx.to_vec_f32()?, &want[1], &scale[1]);
    Ok(())
}

#[test]
fn pools_match_the_direct_reference() -> Result<()> {
    let backend = CandleBackend::cpu();
    let mut rng = Rng(5);
    let shapes = [(1, 1, 6, 6), (3, 4, 7, 9)];
    // (kernel, stride, padding): tiling, overlapping (3/2), gaps (2/3), padded, kernel 1.
    let windows = [(2, 2, 0), (3, 2, 0), (3, 2, 1), (2, 3, 0), (3, 1, 1), (1, 2, 0), (4, 2, 2)];
    for (n, c, h, w) in shapes {
        for (k, stride, pad) in windows {
            let p = Pool { n, c, h, w, k, stride, pad };
            let (ho, wo) = p.out();
            let (x, g) = (rng.values(n * c * h * w), rng.values(n * c * ho * wo));
            pool_case(&backend, &x, &g, p, true)?;
            pool_case(&backend, &x, &g, p, false)?;
        }
    }
    Ok(())
}

#[test]
fn max_pool_routes_ties_to_the_first_maximum() -> Result<()> {
    // Inputs from {0, 1, 2} tie often; overlapping windows add several gradients to one input.
    let backend = CandleBackend::cpu();
    let mut rng = Rng(9);
    let p = Pool { n: 2, c: 3, h: 7, w: 6, k: 3, stride: 2, pad: 1 };
    let (ho, wo) = p.out();
    let x: Vec<f32> = (0..p.n * p.c * p.h * p.w).map(|_| (rng.next() * 3.0).floor() as f32).collect();
    let g = rng.values(p.n * p.c * ho * wo);
    pool_case(&backend, &x, &g, p, true)?;
    // The recorded argmax serves every backward pass over the same graph.
    let vx = backend.variable(&backend.from_f32(&x, &[p.n, p.c, p.h, p.w])?)?;
    let loss = vx.inner().max_pool2d(Window::new(p.k, p.stride).padded(p.pad))?.sqr()?.sum_all()?;
    assert_eq!(loss.gradients(&[&vx])?[0].to_vec_f32()?, loss.gradients(&[&vx])?[0].to_vec_f32()?);
    // All -inf: the first in-image element of each window takes the gradient, as in PyTorch.
    let x = vec![f32::NEG_INFINITY; p.n * p.c * p.h * p.w];
    pool_case(&backend, &x, &g, p, true)
}

#[test]
fn native_pooling_agrees_where_it_works() -> Result<()> {
    // candle's own pooling (kernel == stride) against the fused kernels, forward only.
    let backend = CandleBackend::cpu();
    let mut rng = Rng(13);
    let x = backend.from_f32(&rng.values(2 * 3 * 8 * 8), &[2, 3, 8, 8])?;
    let raw = x
        .downcast_ref::<hamos_candle::CandleTensor>()
        .ok_or_else(|| hamos_api::Error::shape("test", "not candle"))?;
    let window = Window::new(2, 2);
    assert_eq!(raw.native_max_pool2d(window)?.to_vec_f32()?, x.inner().max_pool2d(window)?.to_vec_f32()?);
    let (native, fused) =
        (raw.native_avg_pool2d(window)?.to_vec_f32()?, x.inner().avg_pool2d(window)?.to_vec_f32()?);
    for (a, b) in native.iter().zip(&fused) {
        assert!((a - b).abs() <= 1e-6, "{a} against {b}");
    }
    Ok(())
}

#[test]
fn empty_images_with_padding() -> Result<()> {
    // A 0-wide image padded by 1: every window lies in the padding.
    let backend = CandleBackend::cpu();
    let x = backend.variable(&backend.from_f32(&[], &[2, 3, 1, 0])?)?;
    let w = backend.from_f32(&[0.5; 4 * 3], &[4, 3, 1, 1])?;
    let b = backend.from_f32(&[1.0, 2.0, 3.0, 4.0], &[4])?;
    let out = x.conv2d(&w, Some(&b), 1, 1)?;
    assert_eq!(out.dims(), [2, 4, 3, 2]);
    assert_eq!(
        out.to_vec_f32()?,
        (0..2).flat_map(|_| [1.0f32, 2.0, 3.0, 4.0].map(|v| [v; 6])).flatten().collect::<Vec<_>>()
    );
    assert_eq!(out.sum_all()?.gradients(&[&x])?[0].dims(), [2, 3, 1, 0]);
    let window = Window::new(1, 1).padded(1);
    let max = x.inner().max_pool2d(window)?;
    assert!(max.to_vec_f32()?.iter().all(|v| *v == f32::NEG_INFINITY));
    assert_eq!(max.sum_all()?.gradients(&[&x])?[0].dims(), [2, 3, 1, 0]);
    assert!(x.inner().avg_pool2d(window)?.to_vec_f32()?.iter().all(|v| *v == 0.0));
    Ok(())
}
