//! Factories: `from_f32`, `from_i64`, `full`, `zeros`, `ones`, `randn`, `rand_uniform`.

use std::sync::Arc;

use hamos_api::{rng_from_seed, Backend, DType, Result};

use crate::reference::{assert_close, assert_dims, assert_dtype, assert_i64, ensure, expect_err, Inputs};

/// `from_f32` then `to_vec_f32` gives the same numbers, shape and dtype back, for ranks 1 to 4.
pub fn from_f32_roundtrip(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(101);
    for dims in [vec![7], vec![3, 5], vec![2, 3, 4], vec![2, 1, 3, 2]] {
        let host = inputs.normal(&dims);
        let t = host.upload(backend)?;
        let op = format!("from_f32 {dims:?}");
        assert_dims(&op, &t, &dims)?;
        assert_dtype(&op, &t, DType::F32)?;
        ensure(t.elem_count() == host.elem_count(), &op, || "wrong elem_count".into())?;
        assert_close(&op, &t.to_vec_f32()?, &host.data, 0.0)?;
    }
    let rows = backend.from_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?.to_rows_f32()?;
    ensure(rows == vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]], "to_rows_f32", || {
        format!("got {rows:?}")
    })?;
    let s = backend.from_f32(&[2.5], &[1])?.to_scalar_f32()?;
    ensure(s == 2.5, "to_scalar_f32", || format!("got {s}"))
}

/// `from_i64` then `to_vec_i64` is exact, including negatives and values beyond `f32` precision.
pub fn from_i64_roundtrip(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(102);
    let mut data = inputs.indices(10, 1000);
    data.extend([-1, -987_654_321, 1 << 40, (1 << 53) + 1, i64::from(i32::MAX) + 7]);
    let t = backend.from_i64(&data, &[3, 5])?;
    assert_dims("from_i64", &t, &[3, 5])?;
    assert_dtype("from_i64", &t, DType::I64)?;
    assert_i64("from_i64", &t.to_vec_i64()?, &data)
}

/// `full`, `zeros`, `ones` and `full_like` fill every element.
pub fn full_zeros_ones(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = backend.full(-2.75, &[2, 3, 4])?;
    assert_dims("full", &t, &[2, 3, 4])?;
    assert_dtype("full", &t, DType::F32)?;
    assert_close("full", &t.to_vec_f32()?, &[-2.75; 24], 0.0)?;
    assert_close("zeros", &backend.zeros(&[5, 2])?.to_vec_f32()?, &[0.0; 10], 0.0)?;
    assert_close("ones", &backend.ones(&[3])?.to_vec_f32()?, &[1.0; 3], 0.0)?;
    let like = t.full_like(4.5)?;
    assert_dims("full_like", &like, &[2, 3, 4])?;
    assert_close("full_like", &like.to_vec_f32()?, &[4.5; 24], 0.0)?;
    let s = t.scalar_like(3.0)?;
    assert_dims("scalar_like", &s, &[1])?;
    assert_close("scalar_like", &s.to_vec_f32()?, &[3.0], 0.0)
}

/// `randn` is reproducible for one seed, differs across seeds, and has the asked mean and std.
pub fn randn_reproducible(backend: &Arc<dyn Backend>) -> Result<()> {
    let (mean, std) = (1.5_f32, 2.0_f32);
    let draw = |seed| backend.randn(&[100, 100], mean, std, &mut rng_from_seed(seed))?.to_vec_f32();
    let (a, b, c) = (draw(7)?, draw(7)?, draw(8)?);
    ensure(a == b, "randn", || "two draws with the same seed differ".into())?;
    ensure(a != c, "randn", || "draws with different seeds are equal".into())?;
    let n = a.len() as f64;
    let m = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let sd = (a.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / n).sqrt();
    // 10_000 samples: the standard error of the mean is std / 100, so 0.1 is 5 sigma.
    ensure((m - 1.5).abs() < 0.1, "randn", || format!("mean {m}, want 1.5"))?;
    ensure((sd - 2.0).abs() < 0.1, "randn", || format!("std {sd}, want 2"))
}

/// `rand_uniform` stays in `[low, high)`, covers it, and has the right mean.
pub fn rand_uniform_in_range(backend: &Arc<dyn Backend>) -> Result<()> {
    let t = backend.rand_uniform(&[100, 100], -2.0, 3.0, &mut rng_from_seed(9))?;
    assert_dims("rand_uniform", &t, &[100, 100])?;
    let v = t.to_vec_f32()?;
    let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| (l.min(x), h.max(x)));
    ensure(lo >= -2.0 && hi < 3.0, "rand_uniform", || format!("range [{lo}, {hi}] outside [-2, 3)"))?;
    ensure(lo < -1.9 && hi > 2.9, "rand_uniform", || format!("range [{lo}, {hi}] does not cover [-2, 3)"))?;
    let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    ensure((m - 0.5).abs() < 0.1, "rand_uniform", || format!("mean {m}, want 0.5"))?;
    let again = backend.rand_uniform(&[100, 100], -2.0, 3.0, &mut rng_from_seed(9))?.to_vec_f32()?;
    ensure(v == again, "rand_uniform", || "two draws with the same seed differ".into())
}

/// Data whose length does not match the shape is an error, not a panic.
pub fn wrong_data_length_errors(backend: &Arc<dyn Backend>) -> Result<()> {
    expect_err("from_f32 5 values as [2, 3]", || backend.from_f32(&[1.0; 5], &[2, 3]))?;
    expect_err("from_f32 7 values as [2, 3]", || backend.from_f32(&[1.0; 7], &[2, 3]))?;
    expect_err("from_i64 3 values as [4]", || backend.from_i64(&[1, 2, 3], &[4]))?;
    Ok(())
}
