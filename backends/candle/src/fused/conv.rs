//! 2-D convolution on the CPU as a candle custom op with its backward: im2col + one `gemm`
//! product per group of samples (`im2col.rs`).
//!
//! candle's own CPU conv2d (forward + backward) was measured about 13x slower than libtorch's
//! on 2 cores, mostly in its backward (a transposed convolution and a second convolution);
//! here both gradients are two more products on the same columns:
//! - forward: `out_g [co, S*P] = W [co, K] * cols_g [K, S*P]` for a group of `S` samples;
//! - weight: `dW += dOut_g [co, S*P] * cols_g^T`, summed over the groups;
//! - input: `dcols_g = W^T * dOut_g`, then col2im adds the columns back onto `dX`.
//!
//! Groups are spread over candle's barrier pool. The weight gradient is summed per task in group
//! order, then over tasks in task order, and the tasks are fixed by the shapes alone, so every
//! run gives bit-identical results.

use std::sync::Mutex;

use candle_core::{bail, CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor as CTensor};

use super::im2col::{col2im, cpu_values, im2col, matmul, with_host, Geometry, Mat};
use super::pool::map_ordered;

/// Most tasks the backward splits the batch into; each holds a partial weight gradient.
const MAX_TASKS: usize = 8;
/// Floats of all tasks' partial weight gradients together.
const PARTIAL_BUDGET: usize = 1 << 23;

/// The fused convolution with `stride` and zero `padding`: a [`CustomOp2`] on (input, weight)
/// or a [`CustomOp3`] on (input, weight, bias).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FusedConv2d {
    /// Step between windows.
    pub stride: usize,
    /// Zeros on each side of both spatial dims.
    pub padding: usize,
}

impl FusedConv2d {
    fn forward(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(x.1.dims(), w.1.dims(), self.stride, self.padding)?;
        let (xv, wv) = (cpu_values(x.0, x.1)?, cpu_values(w.0, w.1)?);
        let bv = b.map(|(s, l)| cpu_values(s, l)).transpose()?;
        if bv.is_some_and(|b| b.len() != g.co) {
            bail!("fused conv2d: bias must have {} entries", g.co)
        }
        let out = forward(&g, xv, wv, bv)?;
        Ok((CpuStorage::F32(out), Shape::from((g.n, g.co, g.ho, g.wo))))
    }

    /// The gradients `(dx, dw, db)` of the inputs that need one.
    fn backward(&self, x: &CTensor, w: &CTensor, b: Option<&CTensor>, grad: &CTensor) -> Result<Grads> {
        let g = Geometry::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let need = Needs { x: x.track_op(), w: w.track_op(), b: b.is_some_and(CTensor::track_op) };
        let (dx, dw, db) =
            with_host(x, |xv| with_host(w, |wv| with_host(grad, |gv| backward(&g, xv, wv, gv, need))))?;
        let wrap = |values: Option<Vec<f32>>, shape: &[usize]| {
            values.map(|v| CTensor::from_vec(v, shape, &Device::Cpu)).transpose()
        };
        Ok((wrap(dx, x.dims())?, wrap(dw, w.dims())?, wrap(db, &[g.co])?))
    }
}

type Grads = (Option<CTensor>, Option<CTensor>, Option<CTensor>);

impl CustomOp2 for FusedConv2d {
    fn name(&self) -> &'static str {
        "fused-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.forward((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &CTensor,
        w: &CTensor,
        _res: &CTensor,
        grad: &CTensor,
    ) -> Result<(Option<CTensor>, Option<CTensor>)> {
        let (dx, dw, _) = self.backward(x, w, None, grad)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for FusedConv2d {
    fn name(&self) -> &'static str {
        "fused-conv2d-bias"
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
        self.forward((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(&self, x: &CTensor, w: &CTensor, b: &CTensor, _res: &CTensor, grad: &CTensor) -> Result<Grads> {
        self.backward(x, w, Some(b), grad)
    }
}

/// Which gradients the backward computes (an input that is neither a variable nor computed from
/// one needs none).
#[derive(Debug, Clone, Copy)]
struct Needs {
    x: bool,
    w: bool,
    b: bool,
}

/// Splits the `groups` into at most `max` runs of consecutive groups, as `(first, count)`.
fn tasks(groups: usize, max: usize) -> Vec<(usize, usize)> {
    let per = groups.div_ceil(max.clamp(1, groups.max(1)));
    (0..groups).step_by(per.max(1)).map(|first| (first, per.min(groups - first))).collect()
}

/// Groups per forward task: enough tasks for the pool to balance, few enough that each reuses
/// its buffers over several groups.
fn forward_tasks(g: &Geometry) -> Vec<(usize, usize)> {
    tasks(g.n.div_ceil(g.group()), 4 * MAX_TASKS)
}

fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Result<Vec<f32>> {
    let (group, positions, patch) = (g.group(), g.positions(), g.patch());
    let plane = g.co * positions;
    let mut out = vec![0.0f32; g.n * plane];
    let tasks = forward_tasks(g);
    // Each task owns its run of output samples; the locks are never contended.
    let slices: Vec<Mutex<&mut [f32]>> = split(&mut out, &tasks, group * plane);
    let results = map_ordered(&(0..tasks.len()).collect::<Vec<_>>(), |t| -> Result<()> {
        let Ok(mut dst) = slices[t].lock() else { bail!("fused conv2d: poisoned output slice") };
        let (first, count) = tasks[t];
        let mut cols = vec![0.0f32; patch * group * positions];
        // One sample per group: the product is the output sample itself, written in place.
        let mut prod = vec![0.0f32; if group > 1 { g.co * group * positions } else { 0 }];
        for gi in first..first + count {
            let (s0, s1) = (gi * group, ((gi + 1) * group).min(g.n));
            let width = (s1 - s0) * positions;
            let cols = &mut cols[..patch * width];
            im2col(g, s1 - s0, &x[s0 * g.image()..s1 * g.image()], cols);
            let lhs = Mat { data: w, rs: patch, cs: 1 };
            let rhs = Mat { data: cols, rs: width, cs: 1 };
            let dst = &mut dst[(s0 - first * group) * plane..(s1 - first * group) * plane];
            if group == 1 {
                matmul(g.co, width, patch, dst, false, lhs, rhs)?;
                if let Some(b) = bias {
                    for (row, &b) in dst.chunks_exact_mut(positions.max(1)).zip(b) {
                        row.iter_mut().for_each(|v| *v += b);
                    }
                }
                continue;
            }
            let prod = &mut prod[..g.co * width];
            matmul(g.co, width, patch, prod, false, lhs, rhs)?;
            // `prod` is `[co, samples * P]`; the output is `[samples, co, P]`.
            for (s, sample) in dst.chunks_exact_mut(plane.max(1)).enumerate() {
                for (o, row) in sample.chunks_exact_mut(positions).enumerate() {
                    let src = &prod[o * width + s * positions..][..positions];
                    match bias {
                        Some(b) => row.iter_mut().zip(src).for_each(|(d, v)| *d = v + b[o]),
                        None => row.copy_from_slice(src),
                    }
                }
            }
        }
        Ok(())
    });
    results.into_iter().collect::<Result<Vec<()>>>()?;
    drop(slices);
    Ok(out)
}

/// Host gradients `(dx, dw, db)`, each only where needed.
type HostGrads = (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>);

/// `(dx, dw, db)` for the gradient `grad` `[n, co, ho, wo]` of the output.
fn backward(g: &Geometry, x: &[f32], w: &[f32], grad: &[f32], need: Needs) -> Result<HostGrads> {
    let (group, positions, patch) = (g.group(), g.positions(), g.patch());
    let plane = g.co * positions;
    if grad.len() != g.n * plane || x.len() != g.n * g.image() || w.len() != g.co * patch {
        bail!("fused conv2d backward: buffers do not match {g:?}")
    }
    let max_tasks = (PARTIAL_BUDGET / (g.co * patch).max(1)).clamp(1, MAX_TASKS);
    let tasks = tasks(g.n.div_ceil(group), if need.w || need.b { max_tasks } else { 4 * MAX_TASKS });
    let mut dx = if need.x { vec![0.0f32; g.n * g.image()] } else { Vec::new() };
    let slices = if need.x { split(&mut dx, &tasks, group * g.image()) } else { Vec::new() };
    let partials = map_ordered(&(0..tasks.len()).collect::<Vec<_>>(), |t| -> Result<(Vec<f32>, Vec<f64>)> {
        let (first, count) = tasks[t];
        let mut dw = vec![0.0f32; if need.w { g.co * patch } else { 0 }];
        let mut db = vec![0.0f64; if need.b { g.co } else { 0 }];
        let mut cols = vec![0.0f32; patch * group * positions];
        // One sample per group: its gradient is already `[co, P]`.
        let mut gout = vec![0.0f32; if group > 1 { g.co * group * positions } else { 0 }];
        let mut dx_run = match slices.get(t) {
            Some(slice) => match slice.lock() {
                Ok(guard) => Some(guard),
                Err(_) => bail!("fused conv2d: poisoned gradient slice"),
            },
            None => None,
        };
        for gi in first..first + count {
            let (s0, s1) = (gi * group, ((gi + 1) * group).min(g.n));
            let width = (s1 - s0) * positions;
            // dOut as `[co, samples * P]`, the layout of the forward product.
            let gout: &[f32] = if group == 1 {
                &grad[s0 * plane..s1 * plane]
            } else {
                let gout = &mut gout[..g.co * width];
                for (s, sample) in grad[s0 * plane..s1 * plane].chunks_exact(plane.max(1)).enumerate() {
                    for (o, row) in sample.chunks_exact(positions).enumerate() {
                        gout[o * width + s * positions..][..positions].copy_from_slice(row);
                    }
                }
                gout
            };
            let gmat = Mat { data: gout, rs: width, cs: 1 };
            for (o, acc) in db.iter_mut().enumerate() {
                *acc += row_sum(&gout[o * width..(o + 1) * width]);
            }
            let cols = &mut cols[..patch * width];
            if need.w {
                im2col(g, s1 - s0, &x[s0 * g.image()..s1 * g.image()], cols);
                let cols_t = Mat { data: cols, rs: 1, cs: width };
                matmul(g.co, patch, width, &mut dw, gi > first, gmat, cols_t)?;
            }
            if let Some(dx_run) = dx_run.as_mut() {
                let w_t = Mat { data: w, rs: 1, cs: patch };
                matmul(patch, width, g.co, cols, false, w_t, gmat)?;
                let offset = (s0 - first * group) * g.image();
                col2im(g, s1 - s0, cols, &mut dx_run[offset..offset + (s1 - s0) * g.image()]);
            }
        }
        Ok((dw, db))
    });
    drop(slices);
    let mut dw = need.w.then(|| vec![0.0f32; g.co * patch]);
    let mut db = need.b.then(|| vec![0.0f64; g.co]);
    for partial in partials {
        let (pw, pb) = partial?;
        if let Some(dw) = dw.as_mut() {
            dw.iter_mut().zip(&pw).for_each(|(a, b)| *a += b);
        }
        if let Some(db) = db.as_mut() {
            db.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
        }
    }
    let db = db.map(|db| db.into_iter().map(|v| v as f32).collect());
    Ok((need.x.then_some(dx), dw, db))
}

/// The sum of `values` in f64, over eight interleaved partial sums so that it vectorises; the
/// order is fixed, so the result is too.
fn row_sum(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `data` cut into one mutable run per task, `per_group` floats per group.
fn split<'a>(data: &'a mut [f32], tasks: &[(usize, usize)], per_group: usize) -> Vec<Mutex<&'a mut [f32]>> {
    let mut rest = data;
    let mut runs = Vec::with_capacity(tasks.len());
    for &(_, count) in tasks {
        let (run, tail) = rest.split_at_mut((count * per_group).min(rest.len()));
        runs.push(Mutex::new(run));
        rest = tail;
    }
    runs
}
