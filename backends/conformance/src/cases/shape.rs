//! Shape ops: `reshape`, `transpose`, `t`, `narrow`, `cat`, `broadcast_as`, and ops on the
//! strided views they make.

use std::sync::Arc;

use hamos_api::{Backend, Result, Tensor};

use crate::reference::{assert_tensor, HostTensor, Inputs};

/// `reshape` keeps the row-major order, through several shapes.
pub fn reshape(backend: &Arc<dyn Backend>) -> Result<()> {
    let host = Inputs::new(201).normal(&[2, 3, 4]);
    let t = host.upload(backend)?;
    for dims in [vec![6, 4], vec![4, 6], vec![24], vec![2, 12], vec![1, 24, 1], vec![2, 3, 2, 2]] {
        assert_tensor(&format!("reshape to {dims:?}"), &t.reshape(&dims)?, &host.reshape(&dims)?, 0.0)?;
    }
    let back = t.reshape(&[4, 6])?.reshape(&[2, 3, 4])?;
    assert_tensor("reshape there and back", &back, &host, 0.0)
}

/// `transpose` of every pair of dims of a rank-3 tensor.
pub fn transpose(backend: &Arc<dyn Backend>) -> Result<()> {
    let host = Inputs::new(202).normal(&[2, 3, 4]);
    let t = host.upload(backend)?;
    for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 0), (1, 1)] {
        assert_tensor(&format!("transpose({a}, {b})"), &t.transpose(a, b)?, &host.transpose(a, b)?, 0.0)?;
    }
    Ok(())
}

/// `t` swaps the last two dims, for rank 2 and rank 3.
pub fn t(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(203);
    let m = inputs.normal(&[3, 5]);
    assert_tensor("t [3, 5]", &m.upload(backend)?.t()?, &m.transpose(0, 1)?, 0.0)?;
    let b = inputs.normal(&[2, 3, 4]);
    assert_tensor("t [2, 3, 4]", &b.upload(backend)?.t()?, &b.transpose(1, 2)?, 0.0)?;
    assert_tensor("t twice", &m.upload(backend)?.t()?.t()?, &m, 0.0)
}

/// `narrow` along each dim, at the start, the middle and the end.
pub fn narrow(backend: &Arc<dyn Backend>) -> Result<()> {
    let host = Inputs::new(204).normal(&[4, 5, 6]);
    let t = host.upload(backend)?;
    for dim in 0..3 {
        let size = host.dims[dim];
        for (start, len) in [(0, 1), (1, 2), (size - 2, 2), (0, size)] {
            assert_tensor(
                &format!("narrow(dim {dim}, start {start}, len {len})"),
                &t.narrow(dim, start, len)?,
                &host.narrow(dim, start, len)?,
                0.0,
            )?;
        }
    }
    let twice = t.narrow(1, 1, 3)?.narrow(2, 2, 3)?;
    assert_tensor("narrow twice", &twice, &host.narrow(1, 1, 3)?.narrow(2, 2, 3)?, 0.0)
}

/// `cat` along dims 0 and 1, of two and three tensors, through `Tensor::cat` and `Backend::cat`.
pub fn cat(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(205);
    let (a, b, c) = (inputs.normal(&[2, 3]), inputs.normal(&[4, 3]), inputs.normal(&[1, 3]));
    let (ta, tb, tc) = (a.upload(backend)?, b.upload(backend)?, c.upload(backend)?);
    assert_tensor("cat dim 0", &Tensor::cat(&[&ta, &tb], 0)?, &HostTensor::cat(&[&a, &b], 0)?, 0.0)?;
    assert_tensor(
        "cat 3 dim 0",
        &backend.cat(&[&ta, &tb, &tc], 0)?,
        &HostTensor::cat(&[&a, &b, &c], 0)?,
        0.0,
    )?;
    let (d, e) = (inputs.normal(&[2, 5]), inputs.normal(&[2, 1]));
    let (td, te) = (d.upload(backend)?, e.upload(backend)?);
    assert_tensor("cat dim 1", &Tensor::cat(&[&ta, &td], 1)?, &HostTensor::cat(&[&a, &d], 1)?, 0.0)?;
    assert_tensor(
        "cat 3 dim 1",
        &Tensor::cat(&[&ta, &td, &te], 1)?,
        &HostTensor::cat(&[&a, &d, &e], 1)?,
        0.0,
    )?;
    let (f, g) = (inputs.normal(&[2, 3, 2]), inputs.normal(&[2, 1, 2]));
    let got = Tensor::cat(&[&f.upload(backend)?, &g.upload(backend)?], 1)?;
    assert_tensor("cat rank 3 dim 1", &got, &HostTensor::cat(&[&f, &g], 1)?, 0.0)?;
    assert_tensor("cat of one", &Tensor::cat(&[&ta], 0)?, &a, 0.0)
}

/// `broadcast_as` expands size-1 dims and prepends dims.
pub fn broadcast_as(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(206);
    let cases: [(&[usize], &[usize]); 5] = [
        (&[3, 1], &[2, 3, 4]),
        (&[4], &[3, 4]),
        (&[1], &[2, 2]),
        (&[2, 1, 3], &[2, 4, 3]),
        (&[3, 4], &[3, 4]),
    ];
    for (from, to) in cases {
        let host = inputs.normal(from);
        let got = host.upload(backend)?.broadcast_as(to)?;
        assert_tensor(&format!("broadcast_as {from:?} to {to:?}"), &got, &host.broadcast_as(to)?, 0.0)?;
    }
    Ok(())
}

/// Ops on strided views (transposed, narrowed, broadcast) see the view's elements, not the
/// underlying storage: a backend that forgets to make views contiguous fails here.
pub fn strided_views_compose(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(207);
    let x = inputs.normal(&[4, 6]);
    let y = inputs.normal(&[3, 4]);
    let tx = x.upload(backend)?;
    let view = tx.t()?.narrow(0, 1, 3)?;
    let host_view = x.transpose(0, 1)?.narrow(0, 1, 3)?;
    let got = view.add(&y.upload(backend)?)?;
    assert_tensor("transpose+narrow then add", &got, &host_view.zip(&y, |a, b| a + b)?, 1e-6)?;
    assert_tensor("transpose+narrow then exp", &view.exp()?, &host_view.map(f64::exp), 1e-6)?;
    assert_tensor("transpose+narrow then sum", &view.sum(1, false)?, &host_view.sum(1, false)?, 1e-5)?;
    assert_tensor(
        "transpose then reshape",
        &tx.t()?.reshape(&[24])?,
        &x.transpose(0, 1)?.reshape(&[24])?,
        0.0,
    )?;
    let b = inputs.normal(&[1, 4]);
    let wide = b.upload(backend)?.broadcast_as(&[3, 4])?;
    assert_tensor("broadcast then mul", &wide.mul(&y.upload(backend)?)?, &y.zip(&b, |p, q| p * q)?, 1e-6)?;
    let cols = tx.narrow(1, 2, 3)?;
    let cat = Tensor::cat(&[&cols, &cols], 0)?;
    let host_cols = x.narrow(1, 2, 3)?;
    assert_tensor("narrow then cat", &cat, &HostTensor::cat(&[&host_cols, &host_cols], 0)?, 0.0)
}
