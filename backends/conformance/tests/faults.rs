//! The suite catches bugs: a wrapper around the candle backend injects one fault at a time, and
//! the cases that must notice it fail (while the fault-free wrapper passes everything).

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hamos_api::{
    Backend, BinaryOp, CmpOp, DType, DeviceSpec, ModuleOps, ReduceOp, Result, Tensor, TensorImpl, UnaryOp,
    Window,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// topk only looks at the first 8192 entries of a dim.
    TopkTruncates,
    /// `keepdim = false` is ignored.
    KeepdimIgnored,
    /// transpose reinterprets storage instead of moving elements.
    TransposeReshapes,
    /// `sub` swaps its operands when they broadcast.
    BroadcastSubSwapped,
    /// `log` is off by 0.1%.
    LogOff,
    /// out-of-range indices panic.
    IndexPanics,
    /// gradients come out 1% too large.
    GradScaled,
    /// a second `gradients` call on one loss accumulates into the first.
    GradAccumulates,
    /// ops on a foreign tensor give a generic error instead of `BackendMismatch`.
    NoMismatchError,
    /// `conv2d` ignores its bias.
    ConvBiasDropped,
    /// pooling ignores the padding of its window.
    PoolPaddingIgnored,
}

#[derive(Debug)]
struct Faulty {
    inner: Arc<dyn Backend>,
    fault: Fault,
}

#[derive(Debug)]
struct FTensor {
    inner: Tensor,
    fault: Fault,
    grad_calls: Arc<AtomicUsize>,
}

fn wrap(inner: Tensor, fault: Fault) -> Tensor {
    Tensor::from_impl(FTensor { inner, fault, grad_calls: Arc::new(AtomicUsize::new(0)) })
}

impl FTensor {
    fn un<'a>(&self, op: &'static str, t: &'a Tensor) -> Result<&'a Tensor> {
        match t.downcast_ref::<FTensor>() {
            Some(f) => Ok(&f.inner),
            None if self.fault == Fault::NoMismatchError => {
                Err(hamos_api::Error::Data(format!("{op}: foreign")))
            }
            None => t.expect_backend::<FTensor>(op, self).map(|f| &f.inner),
        }
    }

    fn w(&self, t: Tensor) -> Tensor {
        wrap(t, self.fault)
    }
}

impl TensorImpl for FTensor {
    fn backend_name(&self) -> &'static str {
        "faulty"
    }
    fn device_name(&self) -> String {
        "cpu".into()
    }
    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(Faulty { inner: self.inner.backend(), fault: self.fault })
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn boxed_clone(&self) -> Box<dyn TensorImpl> {
        Box::new(FTensor {
            inner: self.inner.clone(),
            fault: self.fault,
            grad_calls: self.grad_calls.clone(),
        })
    }
    fn dims(&self) -> Vec<usize> {
        self.inner.dims()
    }
    fn dtype(&self) -> DType {
        self.inner.dtype()
    }
    fn reshape(&self, dims: &[usize]) -> Result<Tensor> {
        Ok(self.w(self.inner.reshape(dims)?))
    }
    fn transpose(&self, d0: usize, d1: usize) -> Result<Tensor> {
        let t = self.inner.transpose(d0, d1)?;
        if self.fault == Fault::TransposeReshapes && d0 != d1 {
            return Ok(self.w(self.inner.reshape(&t.dims())?));
        }
        Ok(self.w(t))
    }
    fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        Ok(self.w(self.inner.narrow(dim, start, len)?))
    }
    fn broadcast_as(&self, dims: &[usize]) -> Result<Tensor> {
        Ok(self.w(self.inner.broadcast_as(dims)?))
    }
    fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        let rhs = self.un("binary", rhs)?;
        if self.fault == Fault::BroadcastSubSwapped && op == BinaryOp::Sub && rhs.dims() != self.dims() {
            return Ok(self.w(rhs.inner().binary(op, &self.inner)?));
        }
        Ok(self.w(self.inner.inner().binary(op, rhs)?))
    }
    fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let t = self.inner.inner().unary(op)?;
        if self.fault == Fault::LogOff && op == UnaryOp::Log {
            return Ok(self.w(t.scale(1.001)?));
        }
        Ok(self.w(t))
    }
    fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        Ok(self.w(self.inner.affine(mul, add)?))
    }
    fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        Ok(self.w(self.inner.clamp(min, max)?))
    }
    fn reduce(&self, op: ReduceOp, dim: usize, keepdim: bool) -> Result<Tensor> {
        let keepdim = keepdim || self.fault == Fault::KeepdimIgnored;
        Ok(self.w(self.inner.inner().reduce(op, dim, keepdim)?))
    }
    fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        Ok(self.w(self.inner.argmax(dim, keepdim)?))
    }
    fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        Ok(self.w(self.inner.matmul(self.un("matmul", rhs)?)?))
    }
    fn topk(&self, k: usize, dim: usize, largest: bool) -> Result<(Tensor, Tensor)> {
        let width = self.inner.dim("topk", dim)?;
        let src = if self.fault == Fault::TopkTruncates && width > 8192 {
            self.inner.narrow(dim, 0, 8192)?
        } else {
            self.inner.clone()
        };
        let (v, i) = src.topk(k, dim, largest)?;
        Ok((self.w(v), self.w(i)))
    }
    fn index_select(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        let indices = self.un("index_select", indices)?;
        if self.fault == Fault::IndexPanics {
            let bound = self.inner.dim("index_select", dim)? as i64;
            assert!(indices.to_vec_i64()?.iter().all(|&i| (0..bound).contains(&i)), "index out of bounds");
        }
        Ok(self.w(self.inner.index_select(dim, indices)?))
    }
    fn gather(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        Ok(self.w(self.inner.gather(dim, self.un("gather", indices)?)?))
    }
    fn compare(&self, op: CmpOp, rhs: &Tensor) -> Result<Tensor> {
        Ok(self.w(self.inner.inner().compare(op, self.un("compare", rhs)?)?))
    }
    fn where_mask(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        let (t, f) = (self.un("where_mask", on_true)?, self.un("where_mask", on_false)?);
        Ok(self.w(self.inner.where_mask(t, f)?))
    }
    fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        Ok(self.w(self.inner.to_dtype(dtype)?))
    }
    fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.inner.to_vec_f32()
    }
    fn to_vec_i64(&self) -> Result<Vec<i64>> {
        self.inner.to_vec_i64()
    }
    fn detach(&self) -> Result<Tensor> {
        Ok(self.w(self.inner.detach()?))
    }
    fn gradients(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        let wrt = wrt.iter().map(|t| self.un("gradients", t)).collect::<Result<Vec<_>>>()?;
        let calls = self.grad_calls.fetch_add(1, Ordering::SeqCst) + 1;
        let factor = match self.fault {
            Fault::GradScaled => 1.01,
            Fault::GradAccumulates => calls as f64,
            _ => 1.0,
        };
        self.inner.gradients(&wrt)?.into_iter().map(|g| Ok(self.w(g.scale(factor)?))).collect()
    }
}

impl ModuleOps for FTensor {
    fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, window: Window) -> Result<Tensor> {
        let weight = self.un("conv2d", weight)?;
        let bias = match bias {
            Some(b) if self.fault != Fault::ConvBiasDropped => Some(self.un("conv2d", b)?),
            _ => None,
        };
        Ok(self.w(self.inner.inner().conv2d(weight, bias, window)?))
    }
    fn max_pool2d(&self, window: Window) -> Result<Tensor> {
        Ok(self.w(self.inner.inner().max_pool2d(self.pool_window(window))?))
    }
    fn avg_pool2d(&self, window: Window) -> Result<Tensor> {
        Ok(self.w(self.inner.inner().avg_pool2d(self.pool_window(window))?))
    }
}

impl FTensor {
    fn pool_window(&self, window: Window) -> Window {
        if self.fault == Fault::PoolPaddingIgnored {
            Window { padding: 0, ..window }
        } else {
            window
        }
    }
}

impl Backend for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn device(&self) -> DeviceSpec {
        DeviceSpec::Cpu
    }
    fn from_f32(&self, data: &[f32], dims: &[usize]) -> Result<Tensor> {
        Ok(wrap(self.inner.from_f32(data, dims)?, self.fault))
    }
    fn from_i64(&self, data: &[i64], dims: &[usize]) -> Result<Tensor> {
        Ok(wrap(self.inner.from_i64(data, dims)?, self.fault))
    }
    fn full(&self, value: f32, dims: &[usize]) -> Result<Tensor> {
        Ok(wrap(self.inner.full(value, dims)?, self.fault))
    }
    fn cat(&self, tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let probe =
            FTensor { inner: self.inner.zeros(&[1])?, fault: self.fault, grad_calls: Default::default() };
        let parts = tensors.iter().map(|t| probe.un("cat", t)).collect::<Result<Vec<_>>>()?;
        Ok(wrap(self.inner.cat(&parts, dim)?, self.fault))
    }
    fn variable(&self, init: &Tensor) -> Result<Tensor> {
        let init = init.downcast_ref::<FTensor>().map_or_else(|| init.clone(), |f| f.inner.clone());
        Ok(wrap(self.inner.variable(&init)?, self.fault))
    }
}

fn candle() -> Arc<dyn Backend> {
    Arc::new(hamos_candle::CandleBackend::cpu())
}

fn faulty(fault: Fault) -> Arc<dyn Backend> {
    Arc::new(Faulty { inner: candle(), fault })
}

fn failures(fault: Fault) -> Vec<(&'static str, String)> {
    hamos_conformance::run_all(&faulty(fault))
        .into_iter()
        .filter_map(|(name, outcome)| outcome.err().map(|e| (name, e.to_string())))
        .collect()
}

#[test]
fn fault_free_wrapper_passes() {
    assert_eq!(failures(Fault::None), vec![]);
}

#[test]
fn every_fault_is_caught() {
    let expected: [(Fault, &[&str]); 11] = [
        (Fault::TopkTruncates, &["topk_wide_rows"]),
        (Fault::KeepdimIgnored, &["reduce_each_dim", "reduce_to_rank0", "grad_sum", "mean_and_all"]),
        (Fault::TransposeReshapes, &["transpose", "t", "matmul_strided", "strided_views_compose"]),
        (Fault::BroadcastSubSwapped, &["binary_broadcast", "grad_sub"]),
        (Fault::LogOff, &["unary_ops", "grad_log"]),
        (Fault::IndexPanics, &["index_out_of_range_errors"]),
        (
            Fault::GradScaled,
            &[
                "grad_add",
                "grad_matmul",
                "grad_topk_values",
                "grad_pairwise_sq_dists",
                "conv2d_gradients",
                "pool2d_gradients",
                "conv_pool_chain_gradients",
            ],
        ),
        (Fault::GradAccumulates, &["grad_no_accumulation"]),
        (Fault::NoMismatchError, &[]),
        (Fault::ConvBiasDropped, &["conv2d_forward", "conv2d_gradients"]),
        (Fault::PoolPaddingIgnored, &["max_pool2d_forward", "avg_pool2d_forward", "pool2d_gradients"]),
    ];
    for (fault, cases) in expected {
        let failed = failures(fault);
        eprintln!("{fault:?}: {} cases fail; first: {:?}", failed.len(), failed.first());
        for case in cases {
            assert!(
                failed.iter().any(|(name, _)| name == case),
                "{fault:?} should fail `{case}`; failures: {failed:#?}"
            );
        }
        assert!(cases.is_empty() || !failed.is_empty());
    }
    assert!(
        failures(Fault::BroadcastSubSwapped).iter().all(|(name, _)| *name != "binary_same_shape"),
        "a broadcast-only fault must not fail the same-shape case"
    );
}

#[test]
fn cross_backend_mismatch_is_checked() {
    let (a, b) = (candle(), faulty(Fault::None));
    hamos_conformance::cross_backend_mismatch(&b, &a).unwrap();
    let err = hamos_conformance::cross_backend_mismatch(&faulty(Fault::NoMismatchError), &a).unwrap_err();
    assert!(err.to_string().contains("want Error::BackendMismatch"), "{err}");
}
