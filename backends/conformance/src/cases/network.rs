//! The network ops of [`hamos_api::ModuleOps`]: convolution and pooling against the `f64`
//! reference, their gradients, and invalid shapes giving `Err`.
//!
//! Pooling with padding is not reachable through the [`Tensor`] wrappers yet, but it is part of
//! the `ModuleOps` contract (a [`Window`] carries padding), so those configurations call the
//! backend's implementation directly through [`Tensor::inner`].

use std::sync::Arc;

use hamos_api::{Backend, Error, Result, Tensor, Window};

use crate::gradcheck::{check_gradients, check_unary_gradient, FORWARD_TOL, GRAD_TOL};
use crate::reference::{assert_tensor, ensure, expect_err, HostTensor, Inputs};

/// `result` with `what` in front of its error, so that a backend's own error names the
/// configuration that failed.
fn named<T>(what: &str, result: Result<T>) -> Result<T> {
    result.map_err(|e| Error::Data(format!("{what}: {e}")))
}

/// `(batch, c_in, c_out, [h, w], kernel, stride, padding, bias)`: kernels 1, 3, 5, strides 1
/// and 2, paddings 0 to 2, non-square inputs, a kernel as large as the input, and strides that
/// do not divide the padded input (floor-mode output sizes).
type ConvConfig = (usize, usize, usize, [usize; 2], usize, usize, usize, bool);

const CONV_FORWARD: [ConvConfig; 10] = [
    (1, 1, 2, [7, 9], 1, 1, 0, true),
    (3, 4, 5, [7, 9], 3, 1, 1, true),
    (3, 4, 5, [7, 9], 3, 2, 1, false),
    (1, 4, 2, [7, 9], 5, 1, 2, true),
    (3, 1, 5, [7, 9], 5, 2, 0, false),
    (1, 4, 5, [9, 7], 3, 2, 2, true),
    (3, 4, 2, [8, 6], 1, 2, 0, false),
    (2, 4, 5, [8, 7], 3, 2, 0, true),
    (1, 1, 2, [5, 5], 5, 1, 0, true),
    (3, 1, 2, [2, 3], 3, 1, 1, false),
];

/// `conv2d` forward in many configurations, and on a transposed (non-contiguous) input.
pub fn conv2d_forward(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1201);
    for (n, c_in, c_out, [h, w], kernel, stride, padding, with_bias) in CONV_FORWARD {
        let x = inputs.normal(&[n, c_in, h, w]);
        let weight = inputs.normal(&[c_out, c_in, kernel, kernel]);
        let bias = with_bias.then(|| inputs.normal(&[c_out]));
        let name = format!(
            "conv2d {:?} with {:?} (stride {stride}, padding {padding}, bias {with_bias})",
            x.dims, weight.dims
        );
        let tb = bias.as_ref().map(|b| b.upload(backend)).transpose()?;
        let got =
            named(&name, x.upload(backend)?.conv2d(&weight.upload(backend)?, tb.as_ref(), stride, padding))?;
        assert_tensor(&name, &got, &x.conv2d(&weight, bias.as_ref(), stride, padding)?, FORWARD_TOL)?;
    }
    // A fused kernel that reads its input as contiguous would read a transposed view wrongly.
    let xt = inputs.normal(&[2, 3, 9, 7]);
    let (weight, bias) = (inputs.normal(&[4, 3, 3, 3]), inputs.normal(&[4]));
    let x = xt.transpose(2, 3)?;
    let name = "conv2d of a transposed [2, 3, 7, 9] view (stride 2, padding 1)";
    let tx = xt.upload(backend)?.transpose(2, 3)?;
    let got = named(name, tx.conv2d(&weight.upload(backend)?, Some(&bias.upload(backend)?), 2, 1))?;
    assert_tensor(name, &got, &x.conv2d(&weight, Some(&bias), 2, 1)?, FORWARD_TOL)
}

/// Gradients of `conv2d` wrt input, weight and bias by finite differences: stride 2 with padding
/// 1, stride 1 without padding, and padding 2 (outputs whose windows are mostly padding) without
/// bias.
pub fn conv2d_gradients(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1202);
    let configs: [([usize; 4], [usize; 4], usize, usize); 2] =
        [([2, 3, 5, 6], [4, 3, 3, 3], 2, 1), ([1, 2, 5, 4], [3, 2, 3, 3], 1, 0)];
    for (dx, dw, stride, padding) in configs {
        let (x, w, b) = (inputs.normal(&dx), inputs.normal(&dw), inputs.normal(&dw[..1]));
        check_gradients(
            backend,
            &format!("d conv2d {dx:?} with {dw:?} + bias (stride {stride}, padding {padding})"),
            &[x, w, b],
            |t| t[0].conv2d(&t[1], Some(&t[2]), stride, padding),
            |h| h[0].conv2d(&h[1], Some(&h[2]), stride, padding),
            GRAD_TOL,
        )?;
    }
    let (x, w) = (inputs.normal(&[2, 2, 4, 5]), inputs.normal(&[2, 2, 3, 3]));
    check_gradients(
        backend,
        "d conv2d [2, 2, 4, 5] with [2, 2, 3, 3], no bias (stride 1, padding 2)",
        &[x, w],
        |t| t[0].conv2d(&t[1], None, 1, 2),
        |h| h[0].conv2d(&h[1], None, 1, 2),
        GRAD_TOL,
    )
}

/// Non-overlapping, overlapping and dense windows; `(kernel, stride)`.
const POOL_WINDOWS: [(usize, usize); 5] = [(2, 2), (3, 2), (3, 1), (2, 1), (1, 1)];
/// Odd sizes too, where floor mode drops the last row or column.
const POOL_SHAPES: [[usize; 4]; 3] = [[2, 3, 7, 5], [1, 2, 6, 8], [1, 1, 3, 3]];
/// Padded windows `(kernel, stride, padding)`; libtorch allows at most half the kernel as padding.
const PADDED_POOL_WINDOWS: [(usize, usize, usize); 3] = [(2, 2, 1), (3, 2, 1), (3, 1, 1)];

type PoolOnBackend = fn(&Tensor, usize, usize) -> Result<Tensor>;
type PoolOnImpl = fn(&Tensor, Window) -> Result<Tensor>;
type PoolOnHost = fn(&HostTensor, usize, usize, usize) -> Result<HostTensor>;

fn pool_forward(
    backend: &Arc<dyn Backend>,
    op: &str,
    seed: u64,
    (on_backend, on_impl, on_host): (PoolOnBackend, PoolOnImpl, PoolOnHost),
) -> Result<()> {
    let mut inputs = Inputs::new(seed);
    for dims in POOL_SHAPES {
        let x = inputs.normal(&dims);
        let tx = x.upload(backend)?;
        for (kernel, stride) in POOL_WINDOWS.into_iter().filter(|&(k, _)| k <= dims[2].min(dims[3])) {
            let name = format!("{op} {dims:?} (kernel {kernel}, stride {stride})");
            let got = named(&name, on_backend(&tx, kernel, stride))?;
            assert_tensor(&name, &got, &on_host(&x, kernel, stride, 0)?, FORWARD_TOL)?;
        }
        for (kernel, stride, padding) in PADDED_POOL_WINDOWS {
            let name = format!("{op} {dims:?} (kernel {kernel}, stride {stride}, padding {padding})");
            let got = named(&name, on_impl(&tx, Window::new(kernel, stride).padded(padding)))?;
            assert_tensor(&name, &got, &on_host(&x, kernel, stride, padding)?, FORWARD_TOL)?;
        }
    }
    let xt = inputs.normal(&[2, 3, 5, 7]);
    let name = format!("{op} of a transposed [2, 3, 7, 5] view (kernel 3, stride 2)");
    let got = named(&name, on_backend(&xt.upload(backend)?.transpose(2, 3)?, 3, 2))?;
    assert_tensor(&name, &got, &on_host(&xt.transpose(2, 3)?, 3, 2, 0)?, FORWARD_TOL)
}

/// `max_pool2d` forward: non-overlapping, overlapping and stride-1 windows on odd sizes, padded
/// windows (padding counts as minus infinity) and a transposed input.
pub fn max_pool2d_forward(backend: &Arc<dyn Backend>) -> Result<()> {
    let ops: (PoolOnBackend, PoolOnImpl, PoolOnHost) =
        (Tensor::max_pool2d, |t, w| t.inner().max_pool2d(w), HostTensor::max_pool2d);
    pool_forward(backend, "max_pool2d", 1203, ops)
}

/// `avg_pool2d` forward: as [`max_pool2d_forward`]; padding zeros count in the mean.
pub fn avg_pool2d_forward(backend: &Arc<dyn Backend>) -> Result<()> {
    let ops: (PoolOnBackend, PoolOnImpl, PoolOnHost) =
        (Tensor::avg_pool2d, |t, w| t.inner().avg_pool2d(w), HostTensor::avg_pool2d);
    pool_forward(backend, "avg_pool2d", 1204, ops)
}

/// `global_avg_pool2d`: `[n, c, h, w]` -> `[n, c]`, also for 1x1 and non-square inputs.
pub fn global_avg_pool2d(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1205);
    for dims in [[2, 3, 7, 5], [1, 4, 1, 1], [3, 2, 4, 6]] {
        let x = inputs.normal(&dims);
        let name = format!("global_avg_pool2d {dims:?}");
        let got = named(&name, x.upload(backend)?.global_avg_pool2d())?;
        assert_tensor(&name, &got, &x.global_avg_pool2d()?, FORWARD_TOL)?;
    }
    Ok(())
}

/// Max or average pooling of `t`: through the [`Tensor`] wrapper, or the backend's
/// implementation when padded (see the module docs).
fn pool(t: &Tensor, max: bool, (kernel, stride, padding): (usize, usize, usize)) -> Result<Tensor> {
    match (max, padding) {
        (true, 0) => t.max_pool2d(kernel, stride),
        (false, 0) => t.avg_pool2d(kernel, stride),
        (true, _) => t.inner().max_pool2d(Window::new(kernel, stride).padded(padding)),
        (false, _) => t.inner().avg_pool2d(Window::new(kernel, stride).padded(padding)),
    }
}

/// Gradients of pooling, kernel 2 stride 2, kernel 3 stride 2 (overlapping windows, whose
/// gradients add up) and the same padded. Max pooling is compared with the analytic gradient
/// (all to each window's argmax; random normals have no ties), average pooling with finite
/// differences; then `global_avg_pool2d`.
pub fn pool2d_gradients(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1206);
    for window @ (kernel, stride, padding) in [(2, 2, 0), (3, 2, 0), (3, 2, 1)] {
        let x = inputs.normal(&[2, 3, 7, 5]);
        let what = format!("(kernel {kernel}, stride {stride}, padding {padding}) of [2, 3, 7, 5]");
        let name = format!("d max_pool2d {what}");
        let tx = x.variable(backend)?;
        let out = named(&name, pool(&tx, true, window))?;
        let want = x.max_pool2d(kernel, stride, padding)?;
        assert_tensor(&format!("{name} (forward)"), &out, &want, FORWARD_TOL)?;
        let g = inputs.normal(&want.dims);
        let grads = named(&name, out.mul(&g.upload(backend)?)?.sum_all()?.gradients(&[&tx]))?;
        ensure(grads.len() == 1, &name, || format!("gradients gave {} tensors for 1 variable", grads.len()))?;
        assert_tensor(&name, &grads[0], &x.max_pool2d_backward(&g, kernel, stride, padding)?, GRAD_TOL)?;

        check_unary_gradient(
            backend,
            &format!("d avg_pool2d {what}"),
            &x,
            |t| pool(t, false, window),
            |h| h.avg_pool2d(kernel, stride, padding),
        )?;
    }
    let x = inputs.normal(&[2, 3, 4, 5]);
    check_unary_gradient(backend, "d global_avg_pool2d", &x, Tensor::global_avg_pool2d, |h| {
        h.global_avg_pool2d()
    })
}

/// Invalid shapes and windows give `Err` from every network op, never a panic.
pub fn network_op_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1207);
    let mut t = |dims: &[usize]| inputs.normal(dims).upload(backend);
    let (x, w, b) = (t(&[1, 2, 4, 4])?, t(&[3, 2, 3, 3])?, t(&[3])?);
    let rank3 = t(&[2, 4, 4])?;
    expect_err("conv2d of a rank-3 input", || rank3.conv2d(&w, None, 1, 0))?;
    expect_err("conv2d with a rank-3 weight", || x.conv2d(&t(&[3, 2, 3])?, None, 1, 0))?;
    expect_err("conv2d of 2 channels with a weight for 4", || x.conv2d(&t(&[3, 4, 3, 3])?, None, 1, 0))?;
    expect_err("conv2d with a 3x2 kernel", || x.conv2d(&t(&[3, 2, 3, 2])?, None, 1, 0))?;
    expect_err("conv2d kernel 7 on 4x4 with padding 1", || x.conv2d(&t(&[3, 2, 7, 7])?, None, 1, 1))?;
    expect_err("conv2d kernel 5 on 8x3, too wide", || {
        t(&[1, 2, 8, 3])?.conv2d(&t(&[3, 2, 5, 5])?, None, 1, 0)
    })?;
    expect_err("conv2d with an empty kernel", || x.conv2d(&t(&[3, 2, 0, 0])?, None, 1, 0))?;
    expect_err("conv2d with bias [2] for 3 filters", || x.conv2d(&w, Some(&t(&[2])?), 1, 0))?;
    expect_err("conv2d with bias [3, 1]", || x.conv2d(&w, Some(&t(&[3, 1])?), 1, 0))?;
    expect_err("conv2d with stride 0", || x.conv2d(&w, Some(&b), 0, 1))?;
    for (op, f) in [("max_pool2d", Tensor::max_pool2d as PoolOnBackend), ("avg_pool2d", Tensor::avg_pool2d)] {
        expect_err(&format!("{op} of a rank-3 input"), || f(&rank3, 2, 2))?;
        expect_err(&format!("{op} kernel 5 on 4x4"), || f(&x, 5, 1))?;
        expect_err(&format!("{op} kernel 4 on 3x5"), || f(&t(&[1, 1, 3, 5])?, 4, 1))?;
        expect_err(&format!("{op} kernel 0"), || f(&x, 0, 1))?;
        expect_err(&format!("{op} stride 0"), || f(&x, 2, 0))?;
    }
    expect_err("global_avg_pool2d of a rank-3 input", || rank3.global_avg_pool2d())?;
    Ok(())
}

/// Distance kept between the chain's pre-activations and relu's kink, and between the two
/// largest values of a pooling window: finite differences (and `f32` rounding) must not cross
/// either.
const KINK_MARGIN: f64 = 1e-3;

/// `conv2d -> relu -> max_pool2d -> global_avg_pool2d -> sum`, the gradient wrt the weight by
/// finite differences: every backward of the ops in one graph.
pub fn conv_pool_chain_gradients(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1208);
    let (x, w, b) = (inputs.normal(&[2, 2, 6, 7]), inputs.normal(&[3, 2, 3, 3]), inputs.normal(&[3]));
    let pre = x.conv2d(&w, Some(&b), 1, 1)?;
    clear_of_kinks(&pre)?;
    let (tx, tb) = (x.upload(backend)?, b.upload(backend)?);
    check_gradients(
        backend,
        "d (conv2d -> relu -> max_pool2d -> global_avg_pool2d -> sum) wrt weight",
        std::slice::from_ref(&w),
        |t| {
            let y = tx.conv2d(&t[0], Some(&tb), 1, 1)?.relu()?.max_pool2d(2, 2)?;
            y.global_avg_pool2d()?.sum_all()
        },
        |h| {
            let y = x.conv2d(&h[0], Some(&b), 1, 1)?.map(|v| v.max(0.0)).max_pool2d(2, 2, 0)?;
            Ok(y.global_avg_pool2d()?.sum_all())
        },
        GRAD_TOL,
    )
}

/// Fails (the seed needs changing) unless the pre-activations `pre` `[n, c, h, w]` are all
/// [`KINK_MARGIN`] away from 0 and, in each 2x2 stride-2 window with a positive maximum, the
/// maximum is [`KINK_MARGIN`] above the rest.
fn clear_of_kinks(pre: &HostTensor) -> Result<()> {
    const OP: &str = "conv_pool_chain_gradients inputs";
    let near = pre.data.iter().find(|v| v.abs() < KINK_MARGIN);
    ensure(near.is_none(), OP, || format!("pre-activation {near:?} is too close to relu's kink"))?;
    let (h, w) = (pre.dims[2], pre.dims[3]);
    for plane in pre.data.chunks(h * w) {
        for (oy, ox) in (0..h / 2).flat_map(|oy| (0..w / 2).map(move |ox| (oy, ox))) {
            let mut cells: Vec<f64> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .iter()
                .map(|(dy, dx)| plane[(2 * oy + dy) * w + 2 * ox + dx])
                .collect();
            cells.sort_by(|a, c| c.total_cmp(a));
            ensure(cells[0] <= 0.0 || cells[0] - cells[1] >= KINK_MARGIN, OP, || {
                format!("window maxima {} and {} are too close", cells[0], cells[1])
            })?;
        }
    }
    Ok(())
}
