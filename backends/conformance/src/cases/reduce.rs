//! Reductions: `sum`, `max`, `min`, `argmax`, `mean`, `sum_all`, `mean_all`.

use std::sync::Arc;

use hamos_api::{Backend, DType, ReduceOp, Result, Tensor};

use crate::reference::{assert_dims, assert_dtype, assert_i64, assert_tensor, HostTensor, Inputs};

const TOL: f64 = 1e-5;

fn host_reduce(op: ReduceOp, x: &HostTensor, dim: usize, keepdim: bool) -> Result<HostTensor> {
    match op {
        ReduceOp::Sum => x.sum(dim, keepdim),
        ReduceOp::Max => x.max(dim, keepdim),
        ReduceOp::Min => x.min(dim, keepdim),
    }
}

fn backend_reduce(op: ReduceOp, x: &Tensor, dim: usize, keepdim: bool) -> Result<Tensor> {
    match op {
        ReduceOp::Sum => x.sum(dim, keepdim),
        ReduceOp::Max => x.max(dim, keepdim),
        ReduceOp::Min => x.min(dim, keepdim),
    }
}

/// `sum`, `max` and `min` along each dim of a rank-3 tensor, with `keepdim` true and false.
pub fn reduce_each_dim(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(401).normal(&[2, 3, 4]);
    let tx = x.upload(backend)?;
    for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min] {
        for dim in 0..3 {
            for keepdim in [true, false] {
                let want = host_reduce(op, &x, dim, keepdim)?;
                let name = format!("{op:?} dim {dim} keepdim {keepdim}");
                assert_tensor(&name, &backend_reduce(op, &tx, dim, keepdim)?, &want, TOL)?;
                let via_inner = tx.inner().reduce(op, dim, keepdim)?;
                assert_tensor(&format!("TensorImpl::reduce {name}"), &via_inner, &want, TOL)?;
            }
        }
    }
    Ok(())
}

/// Reducing a rank-1 tensor without `keepdim` gives a rank-0 tensor holding one element.
pub fn reduce_to_rank0(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(402).normal(&[5]);
    let tx = x.upload(backend)?;
    let s = tx.sum(0, false)?;
    assert_tensor("sum of [5] without keepdim", &s, &x.sum(0, false)?, TOL)?;
    assert_dims("sum of [5] without keepdim", &s, &[])?;
    let got = s.to_scalar_f32()?;
    let want = x.data.iter().sum::<f64>();
    crate::reference::assert_close("to_scalar_f32 of rank 0", &[got], &[want], TOL)?;
    assert_tensor("max of [5] with keepdim", &tx.max(0, true)?, &x.max(0, true)?, 0.0)
}

/// `argmax` along each dim: `I64`, the right shape for both `keepdim`s, the right indices; ties
/// give the first index.
pub fn argmax(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(403).distinct(&[3, 4, 5]);
    let tx = x.upload(backend)?;
    for dim in 0..3 {
        for keepdim in [true, false] {
            let name = format!("argmax dim {dim} keepdim {keepdim}");
            let want = x.argmax(dim, keepdim)?;
            let got = tx.argmax(dim, keepdim)?;
            assert_dims(&name, &got, &want.dims)?;
            assert_dtype(&name, &got, DType::I64)?;
            let want: Vec<i64> = want.data.iter().map(|&v| v as i64).collect();
            assert_i64(&name, &got.to_vec_i64()?, &want)?;
        }
    }
    let ties = backend.from_f32(&[1.0, 3.0, 3.0, 2.0, 5.0, 5.0, 5.0, -1.0], &[2, 4])?;
    assert_i64("argmax ties", &ties.argmax(1, false)?.to_vec_i64()?, &[1, 0])
}

/// `mean` along each dim, and `sum_all` / `mean_all` with shape `[1]`.
pub fn mean_and_all(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(404).normal(&[3, 4, 5]);
    let tx = x.upload(backend)?;
    for dim in 0..3 {
        for keepdim in [true, false] {
            let n = x.dims[dim] as f64;
            let want = x.sum(dim, keepdim)?.map(|v| v / n);
            assert_tensor(&format!("mean dim {dim} keepdim {keepdim}"), &tx.mean(dim, keepdim)?, &want, TOL)?;
        }
    }
    let total: f64 = x.data.iter().sum();
    assert_tensor("sum_all", &tx.sum_all()?, &HostTensor::new(&[1], vec![total])?, TOL)?;
    let mean = total / x.elem_count() as f64;
    assert_tensor("mean_all", &tx.mean_all()?, &HostTensor::new(&[1], vec![mean])?, TOL)
}

/// A long sum (100 000 elements) stays accurate: a backend must not lose precision badly.
pub fn sum_long(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(405).uniform(&[4, 25_000], 0.0, 1.0);
    let tx = x.upload(backend)?;
    assert_tensor("sum of [4, 25000] along dim 1", &tx.sum(1, false)?, &x.sum(1, false)?, 1e-4)?;
    assert_tensor("sum_all of 100000", &tx.sum_all()?, &x.sum_all(), 1e-4)
}
