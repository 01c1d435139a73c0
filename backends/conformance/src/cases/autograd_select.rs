//! Gradients of shape and selection ops and of the provided helpers, against finite differences
//! of the `f64` host reference (see [`crate::gradcheck`]).

use std::sync::Arc;

use hamos_api::{Backend, Result, Tensor};

use crate::gradcheck::{check_gradients, check_unary_gradient, GRAD_TOL};
use crate::reference::{HostTensor, Inputs};

/// Gradient of `narrow` along each dim: the slice gets the upstream gradient, the rest zero.
pub fn grad_narrow(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(901).normal(&[4, 5, 3]);
    for (dim, start, len) in [(0, 1, 2), (1, 0, 3), (1, 4, 1), (2, 1, 2)] {
        check_unary_gradient(
            backend,
            &format!("d narrow(dim {dim}, start {start}, len {len})"),
            &x,
            |t| t.narrow(dim, start, len),
            |h| h.narrow(dim, start, len),
        )?;
    }
    Ok(())
}

/// Gradients of `cat` along dims 0 and 1 wrt every part.
pub fn grad_cat(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(902);
    let parts0 = [inputs.normal(&[2, 3]), inputs.normal(&[1, 3]), inputs.normal(&[3, 3])];
    let parts1 = [inputs.normal(&[2, 3]), inputs.normal(&[2, 1])];
    for (dim, parts) in [(0, &parts0[..]), (1, &parts1[..])] {
        check_gradients(
            backend,
            &format!("d cat(dim {dim})"),
            parts,
            |x| Tensor::cat(&x.iter().collect::<Vec<_>>(), dim),
            |x| HostTensor::cat(&x.iter().collect::<Vec<_>>(), dim),
            GRAD_TOL,
        )?;
    }
    Ok(())
}

/// Gradients through `reshape`, `transpose`, `t` and `broadcast_as`.
pub fn grad_reshape_transpose(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(903);
    let x = inputs.normal(&[2, 3, 4]);
    check_unary_gradient(backend, "d reshape", &x, |t| t.reshape(&[4, 6]), |h| h.reshape(&[4, 6]))?;
    check_unary_gradient(backend, "d transpose(0, 2)", &x, |t| t.transpose(0, 2), |h| h.transpose(0, 2))?;
    check_unary_gradient(
        backend,
        "d reshape then t then narrow",
        &x,
        |t| t.reshape(&[6, 4])?.t()?.narrow(1, 1, 4),
        |h| h.reshape(&[6, 4])?.transpose(0, 1)?.narrow(1, 1, 4),
    )?;
    let b = inputs.normal(&[3, 1]);
    check_unary_gradient(
        backend,
        "d broadcast_as",
        &b,
        |t| t.broadcast_as(&[2, 3, 4]),
        |h| h.broadcast_as(&[2, 3, 4]),
    )
}

/// Gradient of `index_select` along dims 0 and 1, with repeated indices (which must add up).
pub fn grad_index_select(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(904).normal(&[4, 5]);
    for (dim, picks) in [(0, vec![3, 0, 3, 1, 3]), (1, vec![4, 4, 0, 2])] {
        let ids = backend.from_i64(&picks, &[picks.len()])?;
        check_unary_gradient(
            backend,
            &format!("d index_select(dim {dim}, {picks:?})"),
            &x,
            |t| t.index_select(dim, &ids),
            |h| h.index_select(dim, &picks),
        )?;
    }
    Ok(())
}

/// Gradient of `gather` along dims 0 and 1, with repeated indices.
pub fn grad_gather(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(905);
    let x = inputs.normal(&[3, 5]);
    for (dim, dims, bound) in [(1, [3, 4], 5), (0, [4, 5], 3)] {
        let picks = inputs.indices(dims.iter().product(), bound);
        let ids = backend.from_i64(&picks, &dims)?;
        check_unary_gradient(
            backend,
            &format!("d gather(dim {dim}, {picks:?})"),
            &x,
            |t| t.gather(dim, &ids),
            |h| h.gather(dim, &picks, &dims),
        )?;
    }
    Ok(())
}

/// Gradient of the `topk` values, largest and smallest, along both dims (distinct inputs).
pub fn grad_topk_values(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(906).distinct(&[4, 6]);
    for (k, dim, largest) in [(3, 1, true), (2, 1, false), (2, 0, true), (1, 0, false)] {
        check_unary_gradient(
            backend,
            &format!("d topk(k {k}, dim {dim}, largest {largest}) values"),
            &x,
            |t| Ok(t.topk(k, dim, largest)?.0),
            |h| Ok(h.topk(k, dim, largest)?.0),
        )?;
    }
    Ok(())
}

/// Gradients of `where_mask` wrt both branches, with broadcasting (the mask is a constant).
pub fn grad_where_mask(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(907);
    let shapes: [[&[usize]; 3]; 2] = [[&[3, 4], &[3, 4], &[3, 4]], [&[3, 4], &[1, 4], &[3, 1]]];
    for [dm, dt, df] in shapes {
        let mask = inputs.normal(dm).map(|v| f64::from(u8::from(v > 0.0)));
        let tmask = mask.upload(backend)?;
        check_gradients(
            backend,
            &format!("d where_mask {dm:?} {dt:?} {df:?}"),
            &[inputs.normal(dt), inputs.normal(df)],
            |x| tmask.where_mask(&x[0], &x[1]),
            |x| mask.where_mask(&x[0], &x[1]),
            GRAD_TOL,
        )?;
    }
    Ok(())
}

/// Gradients of `logsumexp` (also at large inputs) and `log_softmax`.
pub fn grad_logsumexp(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(908);
    let x = inputs.normal(&[3, 5]);
    for (dim, keepdim) in [(1, false), (0, true)] {
        check_unary_gradient(
            backend,
            &format!("d logsumexp(dim {dim}, keepdim {keepdim})"),
            &x,
            |t| t.logsumexp(dim, keepdim),
            |h| h.logsumexp(dim, keepdim),
        )?;
    }
    let big = x.map(|v| v + 1000.0).round_f32();
    // f32 spacing near 1000 is 6e-5, so the forward values carry about that much rounding.
    check_gradients(
        backend,
        "d logsumexp at 1000",
        std::slice::from_ref(&big),
        |t| t[0].logsumexp(1, false),
        |h| h[0].logsumexp(1, false),
        2e-3,
    )?;
    check_unary_gradient(
        backend,
        "d log_softmax(dim 1)",
        &x,
        |t| t.log_softmax(1),
        |h| {
            let lse = h.logsumexp(1, true)?;
            h.zip(&lse, |v, l| v - l)
        },
    )
}

/// Gradient of `l2_normalize` along each dim.
pub fn grad_l2_normalize(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(909).normal(&[4, 3]);
    for dim in [1, 0] {
        check_unary_gradient(
            backend,
            &format!("d l2_normalize(dim {dim})"),
            &x,
            |t| t.l2_normalize(dim),
            |h| h.l2_normalize(dim),
        )?;
    }
    Ok(())
}

/// Gradients of `pairwise_sq_dists` wrt both operands.
pub fn grad_pairwise_sq_dists(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(910);
    check_gradients(
        backend,
        "d pairwise_sq_dists",
        &[inputs.normal(&[4, 3]), inputs.normal(&[5, 3])],
        |x| x[0].pairwise_sq_dists(&x[1]),
        |x| x[0].pairwise_sq_dists(&x[1]),
        GRAD_TOL,
    )
}
