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

/// `class_gram` (fused where the backend fuses it) matches f64 sums, with a dimension that is
/// not a multiple of any tile and more rows than one chunk.
pub fn class_gram(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(708);
    let (classes, capacity, dim) = (3, 130, 29);
    let bank = inputs.normal(&[classes, capacity, dim]);
    let mut want = Vec::with_capacity(classes * dim * dim);
    for class in bank.data.chunks(capacity * dim) {
        for a in 0..dim {
            for b in 0..dim {
                want.push(class.chunks(dim).map(|row| row[a] * row[b]).sum::<f64>());
            }
        }
    }
    let got = bank.upload(backend)?.class_gram()?;
    assert_tensor("class_gram", &got, &HostTensor::new(&[classes, dim, dim], want)?, 1e-4)?;
    let flat = backend.zeros(&[4, 5])?.class_gram();
    ensure(flat.is_err(), "class_gram", || "a rank-2 tensor accepted".into())
}

/// `class_logsumexp` (fused where the backend fuses it) matches an f64 loop, with classes of
/// different fill (one with a single row), unit-norm rows, and a large scale.
pub fn class_logsumexp(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(707);
    let (m, classes, capacity, dim) = (9, 7, 300, 16);
    let unit = |t: HostTensor| -> Result<HostTensor> {
        let rows: Vec<f64> = t
            .data
            .chunks(dim)
            .flat_map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
                r.iter().map(move |x| x / n).collect::<Vec<_>>()
            })
            .collect();
        HostTensor::new(&t.dims, rows).map(|h| h.round_f32())
    };
    let queries = unit(inputs.normal(&[m, dim]))?;
    let bank = unit(inputs.normal(&[classes, capacity, dim]))?;
    let counts = [300, 1, 150, 299, 17, 300, 64];
    for scale in [2.0, 40.0] {
        let mut want = Vec::with_capacity(m * classes);
        for q in queries.data.chunks(dim) {
            for (c, &n) in counts.iter().enumerate() {
                let logits: Vec<f64> = (0..n)
                    .map(|s| {
                        let row = &bank.data[(c * capacity + s) * dim..(c * capacity + s + 1) * dim];
                        scale * q.iter().zip(row).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .collect();
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                want.push(max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln());
            }
        }
        let got = queries.upload(backend)?.class_logsumexp(&bank.upload(backend)?, &counts, scale)?;
        assert_tensor(
            &format!("class_logsumexp scale {scale}"),
            &got,
            &HostTensor::new(&[m, classes], want)?,
            1e-4,
        )?;
    }
    let bad = queries.upload(backend)?.class_logsumexp(&bank.upload(backend)?, &[1, 2], 1.0);
    ensure(bad.is_err(), "class_logsumexp", || "wrong count of classes accepted".into())
}
