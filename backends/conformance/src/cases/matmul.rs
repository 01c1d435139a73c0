//! `matmul`: 2-D, batched, on strided operands and at a size where backends use blocked kernels.

use std::sync::Arc;

use hamos_api::{Backend, Result};

use crate::reference::{assert_tensor, Inputs};

const TOL: f64 = 1e-5;

/// 2-D products of several shapes, including vectors as `[1, k]` and `[k, 1]`.
pub fn matmul_2d(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(501);
    for (m, k, n) in [(3, 5, 4), (1, 7, 1), (6, 2, 6), (4, 1, 3), (2, 3, 2)] {
        let (a, b) = (inputs.normal(&[m, k]), inputs.normal(&[k, n]));
        let got = a.upload(backend)?.matmul(&b.upload(backend)?)?;
        assert_tensor(&format!("matmul [{m}, {k}] x [{k}, {n}]"), &got, &a.matmul(&b)?, TOL)?;
    }
    Ok(())
}

/// Batched 3-D and 4-D products over equal leading dims.
pub fn matmul_batched(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(502);
    let shapes: [(&[usize], &[usize]); 3] =
        [(&[2, 3, 5], &[2, 5, 4]), (&[4, 1, 3], &[4, 3, 2]), (&[2, 2, 3, 4], &[2, 2, 4, 3])];
    for (da, db) in shapes {
        let (a, b) = (inputs.normal(da), inputs.normal(db));
        let got = a.upload(backend)?.matmul(&b.upload(backend)?)?;
        assert_tensor(&format!("matmul {da:?} x {db:?}"), &got, &a.matmul(&b)?, TOL)?;
    }
    Ok(())
}

/// Products of transposed and narrowed (non-contiguous) operands.
pub fn matmul_strided(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(503);
    let (a, b) = (inputs.normal(&[5, 3]), inputs.normal(&[4, 5]));
    let (ta, tb) = (a.upload(backend)?, b.upload(backend)?);
    let got = ta.t()?.matmul(&tb.t()?)?;
    assert_tensor("matmul a.t() x b.t()", &got, &a.transpose(0, 1)?.matmul(&b.transpose(0, 1)?)?, TOL)?;
    let got = ta.narrow(0, 1, 3)?.t()?.matmul(&ta.narrow(0, 2, 3)?)?;
    let want = a.narrow(0, 1, 3)?.transpose(0, 1)?.matmul(&a.narrow(0, 2, 3)?)?;
    assert_tensor("matmul of narrowed, transposed operands", &got, &want, TOL)?;
    let c = inputs.normal(&[2, 4, 3]);
    let tc = c.upload(backend)?;
    let got = tc.t()?.matmul(&tc)?;
    assert_tensor("batched matmul c.t() x c", &got, &c.transpose(1, 2)?.matmul(&c)?, TOL)
}

/// A larger product `[64, 300] x [300, 48]` (blocked or BLAS kernels) stays accurate.
pub fn matmul_large(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(504);
    let (a, b) = (inputs.normal(&[64, 300]), inputs.normal(&[300, 48]));
    let got = a.upload(backend)?.matmul(&b.upload(backend)?)?;
    assert_tensor("matmul [64, 300] x [300, 48]", &got, &a.matmul(&b)?, 1e-4)
}
