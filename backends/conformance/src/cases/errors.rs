//! Invalid inputs give `Err`, never a panic (a panic fails the case with the panic message).

use std::sync::Arc;

use hamos_api::{Backend, DeviceSpec, Error, Result, Tensor};

use crate::reference::{expect_err, no_panic, Inputs};

fn tensors(backend: &Arc<dyn Backend>, seed: u64, shapes: &[&[usize]]) -> Result<Vec<Tensor>> {
    let mut inputs = Inputs::new(seed);
    shapes.iter().map(|dims| inputs.normal(dims).upload(backend)).collect()
}

/// `matmul` of incompatible shapes: inner dims, ranks and batch dims that differ.
pub fn matmul_shape_mismatch_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = tensors(backend, 1101, &[&[2, 3], &[2, 3], &[2, 3, 4], &[3, 4, 5], &[4], &[2, 4, 5]])?;
    expect_err("matmul [2, 3] x [2, 3]", || t[0].matmul(&t[1]))?;
    expect_err("matmul [2, 3, 4] x [3, 4, 5]", || t[2].matmul(&t[3]))?;
    expect_err("matmul [4] x [4]", || t[4].matmul(&t[4]))?;
    expect_err("matmul [2, 3] x [2, 4, 5]", || t[0].matmul(&t[5]))?;
    Ok(())
}

/// Binary ops, comparisons and `where_mask` on shapes that do not broadcast.
pub fn broadcast_mismatch_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = tensors(backend, 1102, &[&[2, 3], &[4, 5], &[3, 2], &[2]])?;
    expect_err("add [2, 3] + [4, 5]", || t[0].add(&t[1]))?;
    expect_err("mul [2, 3] * [3, 2]", || t[0].mul(&t[2]))?;
    expect_err("maximum [2, 3] with [2]", || t[0].maximum(&t[3]))?;
    expect_err("lt [2, 3] < [4, 5]", || t[0].lt(&t[1]))?;
    expect_err("where_mask [2, 3] with [4, 5]", || t[0].where_mask(&t[1], &t[0]))?;
    expect_err("broadcast_as [2, 3] to [4, 3]", || t[0].broadcast_as(&[4, 3]))?;
    expect_err("broadcast_as [2, 3] to [3]", || t[0].broadcast_as(&[3]))?;
    Ok(())
}

/// `reshape` to a different element count.
pub fn reshape_wrong_count_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = tensors(backend, 1103, &[&[2, 3]])?;
    expect_err("reshape [2, 3] to [4, 2]", || t[0].reshape(&[4, 2]))?;
    expect_err("reshape [2, 3] to [7]", || t[0].reshape(&[7]))?;
    Ok(())
}

/// `narrow` past the end or on a missing dim.
pub fn narrow_out_of_range_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = tensors(backend, 1104, &[&[4, 5]])?;
    expect_err("narrow(dim 1, start 3, len 3) of [4, 5]", || t[0].narrow(1, 3, 3))?;
    expect_err("narrow(dim 0, start 5, len 1) of [4, 5]", || t[0].narrow(0, 5, 1))?;
    expect_err("narrow(dim 2) of [4, 5]", || t[0].narrow(2, 0, 1))?;
    Ok(())
}

/// Dims beyond the rank in every op that takes one.
pub fn dim_out_of_range_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = tensors(backend, 1105, &[&[2, 3]])?;
    let x = &t[0];
    let ids = backend.from_i64(&[0, 1], &[2])?;
    let ids2 = backend.from_i64(&[0, 1, 0, 1, 0, 1], &[2, 3])?;
    expect_err("sum dim 2 of [2, 3]", || x.sum(2, false))?;
    expect_err("max dim 5 of [2, 3]", || x.max(5, true))?;
    expect_err("min dim 2 of [2, 3]", || x.min(2, false))?;
    expect_err("argmax dim 2 of [2, 3]", || x.argmax(2, false))?;
    expect_err("topk dim 2 of [2, 3]", || x.topk(1, 2, true))?;
    expect_err("transpose(0, 2) of [2, 3]", || x.transpose(0, 2))?;
    expect_err("index_select dim 2 of [2, 3]", || x.index_select(2, &ids))?;
    expect_err("gather dim 2 of [2, 3]", || x.gather(2, &ids2))?;
    expect_err("cat dim 2 of [2, 3]", || Tensor::cat(&[x, x], 2))?;
    expect_err("mean dim 2 of [2, 3]", || x.mean(2, false))?;
    expect_err("logsumexp dim 2 of [2, 3]", || x.logsumexp(2, false))?;
    Ok(())
}

/// `topk` with `k` wider than the dim.
pub fn topk_k_too_large_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = tensors(backend, 1106, &[&[2, 3]])?;
    expect_err("topk k 4 along a dim of 3", || t[0].topk(4, 1, true))?;
    expect_err("topk k 3 along a dim of 2", || t[0].topk(3, 0, false))?;
    Ok(())
}

/// `cat` of nothing, or of parts whose other dims differ.
pub fn cat_mismatch_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = tensors(backend, 1107, &[&[2, 3], &[2, 4], &[2, 3, 1]])?;
    expect_err("cat [2, 3] and [2, 4] along dim 0", || Tensor::cat(&[&t[0], &t[1]], 0))?;
    expect_err("cat [2, 3] and [2, 3, 1] along dim 0", || Tensor::cat(&[&t[0], &t[2]], 0))?;
    expect_err("cat of no tensors", || Tensor::cat(&[], 0))?;
    expect_err("Backend::cat of no tensors", || backend.cat(&[], 0))?;
    Ok(())
}

/// Out-of-range indices in `index_select` and `gather`, on CPU devices. (On CUDA, neither candle
/// nor libtorch checks indices without a device sync, and libtorch's device-side assert would
/// poison the context for every later case, so this case only runs on CPU.)
pub fn index_out_of_range_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    if backend.device() != DeviceSpec::Cpu {
        return Ok(());
    }
    let t = tensors(backend, 1108, &[&[3, 4]])?;
    let too_big = backend.from_i64(&[0, 4], &[2])?;
    let negative = backend.from_i64(&[-1], &[1])?;
    expect_err("index_select index 4 along a dim of 4", || t[0].index_select(1, &too_big))?;
    expect_err("index_select index 3 along a dim of 3", || {
        t[0].index_select(0, &backend.from_i64(&[3], &[1])?)
    })?;
    expect_err("index_select index -1", || t[0].index_select(0, &negative))?;
    let bad = backend.from_i64(&[0, 1, 2, 9, 0, 1], &[3, 2])?;
    expect_err("gather index 9 along a dim of 4", || t[0].gather(1, &bad))?;
    Ok(())
}

/// `gradients` of a non-scalar is an error.
pub fn gradients_of_non_scalar_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(1109).normal(&[2, 3]).variable(backend)?;
    let y = x.sqr()?;
    expect_err("gradients of a [2, 3] tensor", || y.gradients(&[&x]))?;
    expect_err("gradients of a [2, 1] tensor", || y.sum(1, true)?.gradients(&[&x]))?;
    Ok(())
}

type Check<'a> = Box<dyn FnOnce() -> Result<Tensor> + 'a>;

/// An op mixing tensors of two different backends gives [`Error::BackendMismatch`] (not a
/// panic, not another error). Not in [`crate::conformance_suite!`]: call it where two backends
/// are compiled in, e.g. the workspace integration tests.
pub fn cross_backend_mismatch(a: &Arc<dyn Backend>, b: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1110);
    let (x, y) = (inputs.normal(&[2, 3]), inputs.normal(&[2, 3]));
    let (ta, tb) = (x.upload(a)?, y.upload(b)?);
    let (ma, mb) = (inputs.normal(&[3, 2]).upload(a)?, inputs.normal(&[3, 2]).upload(b)?);
    let ids_b = b.from_i64(&[0, 1], &[2])?;
    let gather_ids_b = b.from_i64(&[0, 1, 0, 1, 0, 1], &[2, 3])?;
    let mask_a = ta.gt(&x.upload(a)?)?;
    let checks: Vec<(&str, Check<'_>)> = vec![
        ("add", Box::new(|| ta.add(&tb))),
        ("add (reversed)", Box::new(|| tb.add(&ta))),
        ("matmul", Box::new(|| ta.matmul(&mb))),
        ("matmul (reversed)", Box::new(|| tb.matmul(&ma))),
        ("compare", Box::new(|| ta.lt(&tb))),
        ("where_mask on_true", Box::new(|| mask_a.where_mask(&tb, &ta))),
        ("where_mask on_false", Box::new(|| mask_a.where_mask(&ta, &tb))),
        ("index_select", Box::new(|| ta.index_select(0, &ids_b))),
        ("gather", Box::new(|| ta.gather(1, &gather_ids_b))),
        ("cat", Box::new(|| Tensor::cat(&[&ta, &tb], 0))),
        ("Backend::cat", Box::new(|| b.cat(&[&ta, &tb], 0))),
    ];
    for (op, f) in checks {
        let name = format!("{op} of a {} and a {} tensor", a.name(), b.name());
        match no_panic(&name, f)? {
            Err(Error::BackendMismatch { .. }) => {}
            Err(other) => {
                return Err(Error::Data(format!("{name}: gave `{other}`, want Error::BackendMismatch")));
            }
            Ok(t) => {
                return Err(Error::Data(format!("{name}: returned Ok({t:?}), want Error::BackendMismatch")))
            }
        }
    }
    Ok(())
}
