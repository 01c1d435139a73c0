//! The provided helpers of `Tensor` (built on the required ops): they must be right on every
//! backend, which checks the required ops they use in combination.

use std::sync::Arc;

use hamos_api::{Backend, Result};

use crate::reference::{assert_close, assert_tensor, ensure, HostTensor, Inputs};

const TOL: f64 = 1e-5;

/// `l2_normalize` gives unit norms along dim 1 and dim 0, and keeps a zero row zero.
pub fn l2_normalize(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(701).normal(&[5, 8]);
    let tx = x.upload(backend)?;
    for dim in [1, 0] {
        let z = tx.l2_normalize(dim)?;
        assert_tensor(&format!("l2_normalize dim {dim}"), &z, &x.l2_normalize(dim)?, TOL)?;
        let norms = z.norm(dim, false)?.to_vec_f32()?;
        assert_close(&format!("norms after l2_normalize dim {dim}"), &norms, &vec![1.0; norms.len()], TOL)?;
    }
    let mut with_zero = x.clone();
    with_zero.data[8..16].fill(0.0);
    let z = with_zero.upload(backend)?.l2_normalize(1)?;
    assert_tensor("l2_normalize with a zero row", &z, &with_zero.l2_normalize(1)?, TOL)
}

/// `logsumexp` along each dim, both `keepdim`s, and stable for inputs like 1000 and -1000.
pub fn logsumexp(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(702).normal(&[3, 4, 5]);
    let tx = x.upload(backend)?;
    for dim in 0..3 {
        for keepdim in [true, false] {
            let name = format!("logsumexp dim {dim} keepdim {keepdim}");
            assert_tensor(&name, &tx.logsumexp(dim, keepdim)?, &x.logsumexp(dim, keepdim)?, TOL)?;
        }
    }
    let big =
        HostTensor::new(&[3, 3], vec![1000.0, 1000.5, 999.0, -1000.0, -999.5, -1001.0, 88.0, 90.0, 0.0])?;
    let got = big.upload(backend)?.logsumexp(1, false)?;
    let values = got.to_vec_f32()?;
    ensure(values.iter().all(|v| v.is_finite()), "logsumexp of large inputs", || {
        format!("not finite: {values:?}")
    })?;
    assert_tensor("logsumexp of large inputs", &got, &big.logsumexp(1, false)?, TOL)
}

/// `log_softmax` matches `x - logsumexp(x)`; `softmax` rows are positive and sum to 1, also for
/// large inputs.
pub fn softmax(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(703);
    let mut x = inputs.normal(&[4, 6]);
    x.data[6..12].iter_mut().for_each(|v| *v *= 100.0);
    let x = x.round_f32();
    let tx = x.upload(backend)?;
    let lse = x.logsumexp(1, true)?;
    let want = x.zip(&lse, |v, l| v - l)?;
    // Rows near 300 carry f32 rounding of about 3e-5 in `x - logsumexp(x)`.
    assert_tensor("log_softmax dim 1", &tx.log_softmax(1)?, &want, 1e-4)?;
    let sm = tx.softmax(1)?;
    assert_tensor("softmax dim 1", &sm, &want.map(f64::exp), 1e-4)?;
    let sums = sm.sum(1, false)?.to_vec_f32()?;
    assert_close("softmax row sums", &sums, &[1.0; 4], TOL)?;
    let y = inputs.normal(&[3, 5]);
    let sums = y.upload(backend)?.softmax(0)?.sum(0, false)?.to_vec_f32()?;
    assert_close("softmax dim 0 column sums", &sums, &[1.0; 5], TOL)
}

/// `pairwise_sq_dists` matches the naive double loop (and is 0 on the diagonal of `x` vs `x`).
pub fn pairwise_sq_dists(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(704);
    let (x, y) = (inputs.normal(&[5, 3]), inputs.normal(&[4, 3]));
    let (tx, ty) = (x.upload(backend)?, y.upload(backend)?);
    assert_tensor("pairwise_sq_dists", &tx.pairwise_sq_dists(&ty)?, &x.pairwise_sq_dists(&y)?, 1e-4)?;
    let selfd = tx.pairwise_sq_dists(&tx)?;
    assert_tensor("pairwise_sq_dists of x with x", &selfd, &x.pairwise_sq_dists(&x)?, 1e-4)?;
    let v = selfd.to_vec_f32()?;
    ensure(v.iter().all(|&d| d >= 0.0), "pairwise_sq_dists", || format!("negative distance in {v:?}"))
}

/// `cosine_similarity` matches the naive formula.
pub fn cosine_similarity(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(705);
    let (x, y) = (inputs.normal(&[5, 6]), inputs.normal(&[3, 6]));
    let want = x.l2_normalize(1)?.matmul(&y.l2_normalize(1)?.transpose(0, 1)?)?;
    let got = x.upload(backend)?.cosine_similarity(&y.upload(backend)?)?;
    assert_tensor("cosine_similarity", &got, &want, TOL)
}

/// `row_dot` and `norm` match naive loops.
pub fn row_dot_and_norm(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(706);
    let (x, y) = (inputs.normal(&[4, 7]), inputs.normal(&[4, 7]));
    let (tx, ty) = (x.upload(backend)?, y.upload(backend)?);
    let want = x.zip(&y, |a, b| a * b)?.sum(1, true)?;
    assert_tensor("row_dot", &tx.row_dot(&ty)?, &want, TOL)?;
    for (dim, keepdim) in [(1, true), (1, false), (0, false)] {
        let want = x.map(|v| v * v).sum(dim, keepdim)?.map(f64::sqrt);
        assert_tensor(&format!("norm dim {dim} keepdim {keepdim}"), &tx.norm(dim, keepdim)?, &want, TOL)?;
    }
    Ok(())
}
