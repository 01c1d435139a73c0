//! Selection: `topk`, `index_select`, `gather`, comparisons, `where_mask`, `to_dtype`.

use std::sync::Arc;

use hamos_api::{Backend, CmpOp, DType, Result, Tensor};

use crate::reference::{assert_dims, assert_dtype, assert_i64, assert_tensor, HostTensor, Inputs};

fn check_topk(backend: &Arc<dyn Backend>, x: &HostTensor, k: usize, dim: usize, largest: bool) -> Result<()> {
    let name = format!("topk(k {k}, dim {dim}, largest {largest}) of {:?}", x.dims);
    let (values, indices) = x.upload(backend)?.topk(k, dim, largest)?;
    let (want_values, want_indices) = x.topk(k, dim, largest)?;
    assert_tensor(&format!("{name} values"), &values, &want_values, 0.0)?;
    assert_dims(&format!("{name} indices"), &indices, &want_values.dims)?;
    assert_dtype(&format!("{name} indices"), &indices, DType::I64)?;
    assert_i64(&format!("{name} indices"), &indices.to_vec_i64()?, &want_indices)
}

/// `topk` largest and smallest along each dim: sorted values and their indices.
pub fn topk(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(601);
    let x = inputs.distinct(&[4, 10]);
    for largest in [true, false] {
        for k in [1, 3, 10] {
            check_topk(backend, &x, k, 1, largest)?;
        }
        check_topk(backend, &x, 2, 0, largest)?;
    }
    let y = inputs.distinct(&[2, 6, 3]);
    check_topk(backend, &y, 4, 1, true)?;
    check_topk(backend, &y, 2, 2, false)?;
    check_topk(backend, &y, 1, 0, true)
}

/// `topk` on rows wider than 8192 (where CUDA sorts in candle give up) is exact: backends must
/// chunk or fall back, not fail or approximate.
pub fn topk_wide_rows(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(602).distinct(&[3, 20_000]);
    for largest in [true, false] {
        for k in [50, 1] {
            check_topk(backend, &x, k, 1, largest)?;
        }
    }
    let col = x.transpose(0, 1)?;
    check_topk(backend, &col, 5, 0, true)
}

/// `index_select` along dims 0, 1 and 2, with repeated and unordered indices, and of a transpose.
pub fn index_select(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(603);
    let x = inputs.normal(&[5, 4, 3]);
    let tx = x.upload(backend)?;
    for (dim, picks) in [(0, vec![4, 0, 0, 2]), (1, vec![3, 1]), (2, vec![2, 2, 0, 1, 0]), (0, vec![3])] {
        let ids = backend.from_i64(&picks, &[picks.len()])?;
        let name = format!("index_select dim {dim} {picks:?}");
        assert_tensor(&name, &tx.index_select(dim, &ids)?, &x.index_select(dim, &picks)?, 0.0)?;
    }
    let m = inputs.normal(&[6, 7]);
    let picks = inputs.indices(9, 7);
    let ids = backend.from_i64(&picks, &[9])?;
    let got = m.upload(backend)?.index_select(1, &ids)?;
    assert_tensor("index_select random columns", &got, &m.index_select(1, &picks)?, 0.0)?;
    // Rows of a transpose (not contiguous) are the columns.
    let got = m.upload(backend)?.t()?.index_select(0, &ids)?.t()?;
    assert_tensor("index_select of a transpose", &got, &m.index_select(1, &picks)?, 0.0)
}

/// `gather` along dims 0 and 1, with repeated indices.
pub fn gather(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(604);
    let x = inputs.normal(&[3, 5]);
    let tx = x.upload(backend)?;
    for (dim, dims, bound) in [(1, [3, 2], 5), (1, [3, 5], 5), (0, [2, 5], 3), (1, [3, 1], 5)] {
        let count = dims.iter().product();
        let picks = inputs.indices(count, bound);
        let ids = backend.from_i64(&picks, &dims)?;
        let name = format!("gather dim {dim} {picks:?}");
        assert_tensor(&name, &tx.gather(dim, &ids)?, &x.gather(dim, &picks, &dims)?, 0.0)?;
    }
    let y = inputs.normal(&[2, 3, 4]);
    let picks = inputs.indices(2 * 3 * 2, 4);
    let ids = backend.from_i64(&picks, &[2, 3, 2])?;
    let got = y.upload(backend)?.gather(2, &ids)?;
    assert_tensor("gather rank 3 dim 2", &got, &y.gather(2, &picks, &[2, 3, 2])?, 0.0)
}

fn cmp_ref(op: CmpOp) -> fn(f64, f64) -> f64 {
    match op {
        CmpOp::Eq => |a, b| f64::from(u8::from(a == b)),
        CmpOp::Ne => |a, b| f64::from(u8::from(a != b)),
        CmpOp::Lt => |a, b| f64::from(u8::from(a < b)),
        CmpOp::Le => |a, b| f64::from(u8::from(a <= b)),
        CmpOp::Gt => |a, b| f64::from(u8::from(a > b)),
        CmpOp::Ge => |a, b| f64::from(u8::from(a >= b)),
    }
}

fn cmp_on(op: CmpOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match op {
        CmpOp::Eq => a.eq(b),
        CmpOp::Ne => a.ne(b),
        CmpOp::Lt => a.lt(b),
        CmpOp::Le => a.le(b),
        CmpOp::Gt => a.gt(b),
        CmpOp::Ge => a.ge(b),
    }
}

/// The six comparisons give `F32` masks of 0 and 1, with equal entries present and broadcasting.
pub fn compare_ops(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(605);
    let a = inputs.normal(&[3, 4]);
    let mut b = inputs.normal(&[3, 4]);
    for i in [0, 5, 6, 11] {
        b.data[i] = a.data[i];
    }
    let (c, d) = (inputs.normal(&[3, 1]), inputs.normal(&[1, 4]));
    let e = HostTensor::new(&[1], vec![a.data[2]])?;
    let pairs = [(&a, &b), (&c, &d), (&a, &e), (&a, &d)];
    for op in [CmpOp::Eq, CmpOp::Ne, CmpOp::Lt, CmpOp::Le, CmpOp::Gt, CmpOp::Ge] {
        for &(x, y) in &pairs {
            let (tx, ty) = (x.upload(backend)?, y.upload(backend)?);
            let name = format!("{op:?} {:?} with {:?}", x.dims, y.dims);
            let want = x.zip(y, cmp_ref(op))?;
            assert_tensor(&name, &cmp_on(op, &tx, &ty)?, &want, 0.0)?;
            assert_tensor(&format!("TensorImpl::compare {name}"), &tx.inner().compare(op, &ty)?, &want, 0.0)?;
        }
    }
    Ok(())
}

/// `where_mask` picks per element, with the mask and both branches broadcasting.
pub fn where_mask(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(606);
    let mask = |h: &HostTensor| h.map(|v| f64::from(u8::from(v > 0.0)));
    let shapes: [[&[usize]; 3]; 4] = [
        [&[3, 4], &[3, 4], &[3, 4]],
        [&[3, 1], &[3, 4], &[1]],
        [&[1, 4], &[3, 1], &[3, 4]],
        [&[2, 3, 4], &[4], &[3, 4]],
    ];
    for [dm, dt, df] in shapes {
        let (m, t, f) = (mask(&inputs.normal(dm)), inputs.normal(dt), inputs.normal(df));
        let got = m.upload(backend)?.where_mask(&t.upload(backend)?, &f.upload(backend)?)?;
        assert_tensor(&format!("where_mask {dm:?} {dt:?} {df:?}"), &got, &m.where_mask(&t, &f)?, 0.0)?;
    }
    let (x, y) = (inputs.normal(&[4, 5]), inputs.normal(&[4, 5]));
    let (tx, ty) = (x.upload(backend)?, y.upload(backend)?);
    let got = tx.gt(&ty)?.where_mask(&tx, &ty)?;
    assert_tensor("where_mask(x > y, x, y)", &got, &x.zip(&y, f64::max)?, 0.0)
}

/// `to_dtype` between `F32` and `I64` both ways, on integral values.
pub fn to_dtype(backend: &Arc<dyn Backend>) -> Result<()> {
    let ints: Vec<i64> = vec![0, 1, -1, 7, -300, 4096, 123_456, -5];
    let t = backend.from_i64(&ints, &[2, 4])?;
    let f = t.to_dtype(DType::F32)?;
    let want = HostTensor::new(&[2, 4], ints.iter().map(|&v| v as f64).collect())?;
    assert_tensor("I64 to F32", &f, &want, 0.0)?;
    let back = f.to_dtype(DType::I64)?;
    assert_dims("F32 to I64", &back, &[2, 4])?;
    assert_dtype("F32 to I64", &back, DType::I64)?;
    assert_i64("F32 to I64", &back.to_vec_i64()?, &ints)?;
    assert_i64("I64 to I64", &t.to_dtype(DType::I64)?.to_vec_i64()?, &ints)?;
    let idx = Inputs::new(607).distinct(&[3, 6]).upload(backend)?.argmax(1, false)?;
    let as_f32 = idx.to_dtype(DType::F32)?.to_vec_f32()?;
    let as_i64: Vec<f32> = idx.to_vec_i64()?.iter().map(|&v| v as f32).collect();
    crate::reference::ensure(as_f32 == as_i64, "argmax to F32", || format!("{as_f32:?} vs {as_i64:?}"))
}

/// `kth_smallest` along each dim matches a host sort: the k-th value and its index, dim kept.
pub fn kth_smallest(backend: &std::sync::Arc<dyn hamos_api::Backend>) -> hamos_api::Result<()> {
    let mut inputs = Inputs::new(330);
    let (rows, cols) = (4, 50);
    let x = inputs.distinct(&[rows, cols]);
    let tx = x.upload(backend)?;
    for k in [1, 7, 50] {
        let (values, indices) = tx.kth_smallest(k, 1)?;
        assert_dims("kth_smallest dim 1", &values, &[rows, 1])?;
        let (mut want_v, mut want_i) = (Vec::new(), Vec::new());
        for r in 0..rows {
            let row = &x.data[r * cols..(r + 1) * cols];
            let mut order: Vec<usize> = (0..cols).collect();
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
            want_v.push(row[order[k - 1]]);
            want_i.push(order[k - 1] as i64);
        }
        assert_tensor(&format!("kth_smallest k {k}"), &values, &HostTensor::new(&[rows, 1], want_v)?, 0.0)?;
        assert_i64(&format!("kth_smallest k {k} indices"), &indices.to_vec_i64()?, &want_i)?;
    }
    let (values, _) = tx.kth_smallest(2, 0)?;
    assert_dims("kth_smallest dim 0", &values, &[1, cols])?;
    for c in 0..cols {
        let mut column: Vec<f64> = (0..rows).map(|r| x.data[r * cols + c]).collect();
        column.sort_by(f64::total_cmp);
        let got = values.to_vec_f32()?[c];
        if f64::from(got) != column[1] {
            return Err(hamos_api::Error::Data(format!(
                "kth_smallest dim 0 column {c}: {got} vs {}",
                column[1]
            )));
        }
    }
    let too_big = tx.kth_smallest(51, 1);
    if too_big.is_ok() {
        return Err(hamos_api::Error::Data("kth_smallest accepted k > width".into()));
    }
    Ok(())
}
