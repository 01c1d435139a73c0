//! [`TchTensor`]: a libtorch tensor behind the shared tensor trait.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use hamos_api::{Backend, BinaryOp, CmpOp, DType, Error, ReduceOp, Result, Tensor, TensorImpl, UnaryOp};
use tch::{Device, Kind, TchError};

use crate::backend::TchBackend;
use crate::BACKEND_NAME;

/// A HamOS tensor backed by a [`tch::Tensor`]: `F32` is `Kind::Float`, `I64` is `Kind::Int64`.
///
/// `Send` (like `tch::Tensor`) but not `Sync`; [`TensorImpl::boxed_clone`] is a shallow clone
/// that shares storage and autograd history.
pub struct TchTensor(tch::Tensor);

impl TchTensor {
    /// Wraps a tch tensor. It should hold `Kind::Float` or `Kind::Int64`; other floating kinds
    /// report [`DType::F32`] and other integer kinds [`DType::I64`] (ops return the two kinds).
    pub fn new(tensor: tch::Tensor) -> Self {
        TchTensor(tensor)
    }

    /// The tch tensor.
    pub fn raw(&self) -> &tch::Tensor {
        &self.0
    }

    /// Unwraps the tch tensor.
    pub fn into_inner(self) -> tch::Tensor {
        self.0
    }

    /// `tch device`, for messages.
    fn location(&self) -> String {
        format!("{BACKEND_NAME} {}", device_name(self.0.device()))
    }

    /// The rank of the tensor.
    fn rank(&self) -> usize {
        self.0.dim()
    }

    /// `dim` as a tch dim, after checking it against the rank.
    fn check_dim(&self, op: &'static str, dim: usize) -> Result<i64> {
        if dim < self.rank() {
            Ok(dim as i64)
        } else {
            Err(Error::shape(op, format!("dim {dim} out of range for shape {:?}", self.0.size())))
        }
    }

    /// Downcasts an operand of `op`; it must be a tch tensor on the same device.
    pub(crate) fn operand<'a>(&self, op: &'static str, rhs: &'a Tensor) -> Result<&'a tch::Tensor> {
        let rhs = rhs.expect_backend::<TchTensor>(op, self)?;
        if rhs.0.device() != self.0.device() {
            return Err(Error::BackendMismatch { op, left: self.location(), right: rhs.location() });
        }
        Ok(&rhs.0)
    }

    /// Copies all elements, converted to `kind`, to the host in row-major order.
    fn host_copy<T: tch::kind::Element + Copy>(&self, op: &'static str) -> Result<Vec<T>> {
        let numel = self.0.numel();
        let mut out = vec![T::ZERO; numel];
        self.0
            .f_detach()
            .and_then(|t| t.f_to_kind(T::KIND))
            .and_then(|t| t.f_copy_data(&mut out, numel))
            .map_err(tch_err(op))?;
        Ok(out)
    }
}

impl From<TchTensor> for Tensor {
    fn from(tensor: TchTensor) -> Self {
        Tensor::from_impl(tensor)
    }
}

impl fmt::Debug for TchTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.0.f_kind().map_or_else(|_| "?".to_string(), |k| format!("{k:?}"));
        write!(f, "TchTensor[{} {kind} {:?}]", device_name(self.0.device()), self.0.size())
    }
}

/// Maps a tch error of `op` to [`Error::Backend`].
pub(crate) fn tch_err(op: &'static str) -> impl Fn(TchError) -> Error {
    move |err| Error::backend(BACKEND_NAME, op, err)
}

/// Sizes as tch wants them.
pub(crate) fn i64_dims(op: &'static str, dims: &[usize]) -> Result<Vec<i64>> {
    dims.iter()
        .map(|&d| i64::try_from(d).map_err(|_| Error::shape(op, format!("size {d} in {dims:?} too large"))))
        .collect()
}

/// The hamos dtype of a tch tensor.
pub(crate) fn dtype_of(tensor: &tch::Tensor) -> DType {
    match tensor.f_kind() {
        Ok(
            Kind::Uint8
            | Kind::Int8
            | Kind::Int16
            | Kind::Int
            | Kind::Int64
            | Kind::Bool
            | Kind::QInt8
            | Kind::QUInt8
            | Kind::QInt32,
        ) => DType::I64,
        _ => DType::F32,
    }
}

/// The tch kind of a hamos dtype.
fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::I64 => Kind::Int64,
    }
}

/// `cpu` or `cuda:N`.
fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".to_string(),
        Device::Vulkan => "vulkan".to_string(),
    }
}

/// Maps the error of a tch op, brings the result to `Float` or `Int64`, and wraps it.
pub(crate) fn finish(op: &'static str, result: Result<tch::Tensor, TchError>) -> Result<Tensor> {
    let tensor = result.map_err(tch_err(op))?;
    Ok(Tensor::from_impl(TchTensor(normalize(op, tensor)?)))
}

/// Converts a tensor of any other kind to `Float` or `Int64`.
fn normalize(op: &'static str, tensor: tch::Tensor) -> Result<tch::Tensor> {
    match tensor.f_kind() {
        Ok(Kind::Float | Kind::Int64) => Ok(tensor),
        _ => tensor.f_to_kind(kind_of(dtype_of(&tensor))).map_err(tch_err(op)),
    }
}

/// The numpy broadcast of `shapes`, or a shape error naming them.
fn broadcast_shapes(op: &'static str, shapes: &[Vec<i64>]) -> Result<Vec<i64>> {
    let rank = shapes.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = vec![1i64; rank];
    for shape in shapes {
        let offset = rank - shape.len();
        for (i, &d) in shape.iter().enumerate() {
            let o = &mut out[offset + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(Error::shape(op, format!("shapes {shapes:?} do not broadcast")));
            }
        }
    }
    Ok(out)
}

/// Checks that every index lies in `0..size`, on the CPU only: elsewhere reading the verdict
/// is a device sync on every call, so there the caller vouches for its indices (an index out of
/// range raises a device-side assert on CUDA, which poisons the context).
fn check_indices(op: &'static str, indices: &tch::Tensor, size: i64) -> Result<()> {
    if indices.device() != Device::Cpu {
        return Ok(());
    }
    let bad = indices
        .f_lt(0i64)
        .and_then(|low| indices.f_ge(size).and_then(|high| low.f_logical_or(&high)))
        .and_then(|bad| bad.f_any())
        .and_then(|any| any.f_int64_value(&[]))
        .map_err(tch_err(op))?;
    if bad != 0 {
        return Err(Error::shape(op, format!("index out of range 0..{size}")));
    }
    Ok(())
}

/// Checks that `indices` are `I64`.
fn check_index_dtype(op: &'static str, indices: &tch::Tensor) -> Result<()> {
    match indices.f_kind() {
        Ok(Kind::Int64) => Ok(()),
        other => Err(Error::shape(op, format!("indices must be I64, got {other:?}"))),
    }
}

impl TensorImpl for TchTensor {
    fn backend_name(&self) -> &'static str {
        BACKEND_NAME
    }

    fn device_name(&self) -> String {
        device_name(self.0.device())
    }

    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(TchBackend::for_device(self.0.device()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn boxed_clone(&self) -> Box<dyn TensorImpl> {
        Box::new(TchTensor(self.0.shallow_clone()))
    }

    fn dims(&self) -> Vec<usize> {
        self.0.size().into_iter().map(|d| d as usize).collect()
    }

    fn dtype(&self) -> DType {
        dtype_of(&self.0)
    }

    fn reshape(&self, dims: &[usize]) -> Result<Tensor> {
        let shape = i64_dims("reshape", dims)?;
        let count = shape.iter().try_fold(1i64, |acc, &d| acc.checked_mul(d));
        if count != Some(self.0.numel() as i64) {
            return Err(Error::shape("reshape", format!("cannot reshape {:?} into {dims:?}", self.0.size())));
        }
        finish("reshape", self.0.f_reshape(shape.as_slice()))
    }

    fn transpose(&self, dim0: usize, dim1: usize) -> Result<Tensor> {
        let d0 = self.check_dim("transpose", dim0)?;
        let d1 = self.check_dim("transpose", dim1)?;
        finish("transpose", self.0.f_transpose(d0, d1))
    }

    fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        let d = self.check_dim("narrow", dim)?;
        let size = self.0.size()[dim];
        let end = start.checked_add(len);
        if end.is_none_or(|end| end as u64 > size as u64) {
            return Err(Error::shape(
                "narrow",
                format!(
                    "range {start}..{start}+{len} out of bounds for dim {dim} of shape {:?}",
                    self.0.size()
                ),
            ));
        }
        finish("narrow", self.0.f_narrow(d, start as i64, len as i64))
    }

    fn broadcast_as(&self, dims: &[usize]) -> Result<Tensor> {
        let target = i64_dims("broadcast_as", dims)?;
        let source = self.0.size();
        let fits = source.len() <= target.len()
            && source.iter().rev().zip(target.iter().rev()).all(|(&s, &t)| s == t || s == 1);
        if !fits {
            return Err(Error::shape("broadcast_as", format!("cannot broadcast {source:?} to {dims:?}")));
        }
        finish("broadcast_as", self.0.f_broadcast_to(target.as_slice()))
    }

    fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        let name = match op {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        };
        let rhs = self.operand(name, rhs)?;
        broadcast_shapes(name, &[self.0.size(), rhs.size()])?;
        let lhs = &self.0;
        let out = match op {
            BinaryOp::Add => lhs.f_add(rhs),
            BinaryOp::Sub => lhs.f_sub(rhs),
            BinaryOp::Mul => lhs.f_mul(rhs),
            BinaryOp::Div => lhs.f_div(rhs),
            BinaryOp::Maximum => lhs.f_maximum(rhs),
            BinaryOp::Minimum => lhs.f_minimum(rhs),
        };
        finish(name, out)
    }

    fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let x = &self.0;
        let (name, out) = match op {
            UnaryOp::Exp => ("exp", x.f_exp()),
            UnaryOp::Log => ("log", x.f_log()),
            UnaryOp::Sqrt => ("sqrt", x.f_sqrt()),
            UnaryOp::Cos => ("cos", x.f_cos()),
            UnaryOp::Sin => ("sin", x.f_sin()),
            UnaryOp::Abs => ("abs", x.f_abs()),
            UnaryOp::Relu => ("relu", x.f_relu()),
            UnaryOp::Tanh => ("tanh", x.f_tanh()),
        };
        finish(name, out)
    }

    fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        finish("affine", self.0.f_mul_scalar(mul).and_then(|t| t.f_add_scalar(add)))
    }

    fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        finish("clamp", self.0.f_clamp(min, max))
    }

    fn reduce(&self, op: ReduceOp, dim: usize, keepdim: bool) -> Result<Tensor> {
        let (name, d) = match op {
            ReduceOp::Sum => ("sum", self.check_dim("sum", dim)?),
            ReduceOp::Max => ("max", self.check_dim("max", dim)?),
            ReduceOp::Min => ("min", self.check_dim("min", dim)?),
        };
        if op != ReduceOp::Sum && self.0.size()[dim] == 0 {
            return Err(Error::shape(name, format!("dim {dim} of shape {:?} is empty", self.0.size())));
        }
        let out = match op {
            ReduceOp::Sum => self.0.f_sum_dim_intlist(d, keepdim, None::<Kind>),
            ReduceOp::Max => self.0.f_amax(d, keepdim),
            ReduceOp::Min => self.0.f_amin(d, keepdim),
        };
        finish(name, out)
    }

    fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        let d = self.check_dim("argmax", dim)?;
        if self.0.size()[dim] == 0 {
            return Err(Error::shape("argmax", format!("dim {dim} of shape {:?} is empty", self.0.size())));
        }
        finish("argmax", self.0.f_argmax(d, keepdim))
    }

    fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let rhs = self.operand("matmul", rhs)?;
        let (a, b) = (self.0.size(), rhs.size());
        let ok = a.len() >= 2
            && a.len() == b.len()
            && a[..a.len() - 2] == b[..b.len() - 2]
            && a[a.len() - 1] == b[b.len() - 2];
        if !ok {
            return Err(Error::shape(
                "matmul",
                format!(
                    "cannot multiply {a:?} by {b:?} (needs rank >= 2, equal leading dims and \
                     [.., m, k] x [.., k, n])"
                ),
            ));
        }
        if dtype_of(&self.0) != dtype_of(rhs) {
            return Err(Error::shape(
                "matmul",
                format!("dtypes differ: {:?} and {:?}", dtype_of(&self.0), dtype_of(rhs)),
            ));
        }
        finish("matmul", self.0.f_matmul(rhs))
    }

    fn topk(&self, k: usize, dim: usize, largest: bool) -> Result<(Tensor, Tensor)> {
        let d = self.check_dim("topk", dim)?;
        let size = self.0.size()[dim];
        if k as u64 > size as u64 {
            return Err(Error::shape(
                "topk",
                format!("k = {k} exceeds dim {dim} of shape {:?}", self.0.size()),
            ));
        }
        let (values, indices) = self.0.f_topk(k as i64, d, largest, true).map_err(tch_err("topk"))?;
        Ok((finish("topk", Ok(values))?, finish("topk", Ok(indices))?))
    }

    fn index_select(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        let d = self.check_dim("index_select", dim)?;
        let indices = self.operand("index_select", indices)?;
        check_index_dtype("index_select", indices)?;
        if indices.dim() != 1 {
            return Err(Error::shape(
                "index_select",
                format!("indices must have rank 1, got shape {:?}", indices.size()),
            ));
        }
        check_indices("index_select", indices, self.0.size()[dim])?;
        finish("index_select", self.0.f_index_select(d, indices))
    }

    fn gather(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        let d = self.check_dim("gather", dim)?;
        let indices = self.operand("gather", indices)?;
        check_index_dtype("gather", indices)?;
        let (src, idx) = (self.0.size(), indices.size());
        let fits =
            src.len() == idx.len() && src.iter().zip(&idx).enumerate().all(|(i, (s, n))| i == dim || n <= s);
        if !fits {
            return Err(Error::shape(
                "gather",
                format!(
                    "indices of shape {idx:?} do not fit shape {src:?} (same rank, no larger \
                     outside dim {dim})"
                ),
            ));
        }
        check_indices("gather", indices, src[dim])?;
        finish("gather", self.0.f_gather(d, indices, false))
    }

    fn compare(&self, op: CmpOp, rhs: &Tensor) -> Result<Tensor> {
        let name = match op {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
        };
        let rhs = self.operand(name, rhs)?;
        broadcast_shapes(name, &[self.0.size(), rhs.size()])?;
        let lhs = &self.0;
        let mask = match op {
            CmpOp::Eq => lhs.f_eq_tensor(rhs),
            CmpOp::Ne => lhs.f_ne_tensor(rhs),
            CmpOp::Lt => lhs.f_lt_tensor(rhs),
            CmpOp::Le => lhs.f_le_tensor(rhs),
            CmpOp::Gt => lhs.f_gt_tensor(rhs),
            CmpOp::Ge => lhs.f_ge_tensor(rhs),
        };
        finish(name, mask.and_then(|m| m.f_to_kind(Kind::Float)))
    }

    fn where_mask(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        let on_true = self.operand("where_mask", on_true)?;
        let on_false = self.operand("where_mask", on_false)?;
        broadcast_shapes("where_mask", &[self.0.size(), on_true.size(), on_false.size()])?;
        let out = self.0.f_ne(0i64).and_then(|cond| on_true.f_where_self(&cond, on_false));
        finish("where_mask", out)
    }

    fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        finish("to_dtype", self.0.f_to_kind(kind_of(dtype)))
    }

    fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.host_copy("to_vec_f32")
    }

    fn to_vec_i64(&self) -> Result<Vec<i64>> {
        self.host_copy("to_vec_i64")
    }

    fn detach(&self) -> Result<Tensor> {
        finish("detach", self.0.f_detach())
    }

    fn gradients(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        self.gradients_with(wrt, true)
    }

    /// Without `keep_graph`: libtorch frees each saved buffer once its backward has run, so the
    /// gradients reuse that memory instead of growing the heap (measured on `small_cnn`: the
    /// kept graph made the step's gradients page-fault fresh memory, about 1.2x slower).
    fn gradients_release(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        self.gradients_with(wrt, false)
    }
}

impl TchTensor {
    /// The gradients of this scalar with respect to `wrt`; `keep_graph` keeps the graph's
    /// buffers so that it can be differentiated again.
    fn gradients_with(&self, wrt: &[&Tensor], keep_graph: bool) -> Result<Vec<Tensor>> {
        let inputs = wrt.iter().map(|t| self.operand("gradients", t)).collect::<Result<Vec<_>>>()?;
        let mut grads: Vec<Option<tch::Tensor>> = inputs.iter().map(|_| None).collect();
        // libtorch refuses inputs that do not require grad; they (and everything, when the
        // loss itself has no graph) get zeros.
        let active: Vec<usize> = if self.0.requires_grad() {
            (0..inputs.len()).filter(|&i| inputs[i].requires_grad()).collect()
        } else {
            Vec::new()
        };
        if !active.is_empty() {
            let active_inputs: Vec<&tch::Tensor> = active.iter().map(|&i| inputs[i]).collect();
            // The engine returns the gradients without accumulating into any `.grad()`.
            let found = tch::Tensor::f_run_backward(&[&self.0], &active_inputs, keep_graph, false)
                .map_err(tch_err("gradients"))?;
            for (i, grad) in active.into_iter().zip(found) {
                // Undefined: the input does not take part in the graph of the loss.
                if grad.defined() {
                    grads[i] = Some(grad);
                }
            }
        }
        grads
            .into_iter()
            .zip(&inputs)
            .map(|(grad, input)| match grad {
                Some(grad) => finish("gradients", Ok(grad)),
                None => finish("gradients", input.f_zeros_like()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use hamos_api::{Backend, DType, DeviceSpec, Tensor};

    use crate::{set_threads, TchBackend};

    fn cpu() -> TchBackend {
        set_threads(1);
        TchBackend::new(DeviceSpec::Cpu).unwrap()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn matmul_and_broadcast_ops() {
        let b = cpu();
        let x = b.from_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
        let y = b.from_f32(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap();
        let z = x.matmul(&y).unwrap();
        assert_eq!(z.dims(), vec![2, 2]);
        assert_eq!(z.to_vec_f32().unwrap(), vec![4.0, 5.0, 10.0, 11.0]);

        let row = b.from_f32(&[10.0, 20.0, 30.0], &[3]).unwrap();
        let sum = x.add(&row).unwrap();
        assert_eq!(sum.to_vec_f32().unwrap(), vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        assert_eq!(x.sum(1, false).unwrap().to_vec_f32().unwrap(), vec![6.0, 15.0]);
        assert_eq!(x.max(0, true).unwrap().dims(), vec![1, 3]);
        assert_eq!(x.argmax(1, false).unwrap().to_vec_i64().unwrap(), vec![2, 2]);
        assert_eq!(x.affine(2.0, 1.0).unwrap().to_vec_f32().unwrap()[..2], [3.0, 5.0]);
        let mask = x.gt(&b.from_f32(&[3.0], &[1]).unwrap()).unwrap();
        assert_eq!(mask.dtype(), DType::F32);
        assert_eq!(mask.to_vec_f32().unwrap(), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let picked = mask.where_mask(&x, &x.neg().unwrap()).unwrap();
        assert_eq!(picked.to_vec_f32().unwrap(), vec![-1.0, -2.0, -3.0, 4.0, 5.0, 6.0]);

        let (values, indices) = x.topk(2, 1, true).unwrap();
        assert_eq!(values.to_vec_f32().unwrap(), vec![3.0, 2.0, 6.0, 5.0]);
        assert_eq!(indices.dtype(), DType::I64);
        assert_eq!(indices.to_vec_i64().unwrap(), vec![2, 1, 2, 1]);
        let idx = b.from_i64(&[1, 0, 1], &[3]).unwrap();
        let rows = x.index_select(0, &idx).unwrap();
        assert_eq!(rows.to_rows_f32().unwrap()[2], vec![4.0, 5.0, 6.0]);
        let cat = Tensor::cat(&[&x, &x], 0).unwrap();
        assert_eq!(cat.dims(), vec![4, 3]);
    }

    #[test]
    fn bad_input_gives_errors_not_panics() {
        let b = cpu();
        let x = b.from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        assert!(b.from_f32(&[1.0, 2.0, 3.0], &[2, 2]).is_err());
        assert!(x.sum(2, false).is_err());
        assert!(x.transpose(0, 5).is_err());
        assert!(x.narrow(1, 1, 2).is_err());
        assert!(x.reshape(&[3]).is_err());
        assert!(x.topk(3, 1, true).is_err());
        assert!(x.matmul(&b.from_f32(&[1.0; 6], &[3, 2]).unwrap()).is_err());
        assert!(x.add(&b.from_f32(&[1.0; 3], &[3]).unwrap()).is_err());
        let bad = b.from_i64(&[0, 2], &[2]).unwrap();
        assert!(x.index_select(0, &bad).is_err());
        assert!(x.index_select(0, &x).is_err());
        assert!(x.broadcast_as(&[3, 2]).is_err());
        assert!(b.variable(&bad).is_err());
    }

    #[test]
    fn gradients_are_exact_and_do_not_accumulate() {
        let b = cpu();
        let w = b.variable(&b.from_f32(&[1.0, -2.0, 3.0], &[3]).unwrap()).unwrap();
        let unused = b.variable(&b.zeros(&[2]).unwrap()).unwrap();
        let constant = b.from_f32(&[1.0], &[1]).unwrap();
        // loss = sum(w^2) + max(w) = 14 + 3; d/dw = 2w + onehot(argmax)
        let loss = w.sqr().unwrap().sum(0, true).unwrap().add(&w.max(0, true).unwrap()).unwrap();
        assert_eq!(loss.to_vec_f32().unwrap(), vec![17.0]);
        for _ in 0..2 {
            let grads = loss.gradients(&[&w, &unused, &constant]).unwrap();
            assert!(close(&grads[0].to_vec_f32().unwrap(), &[2.0, -4.0, 7.0]));
            assert_eq!(grads[1].to_vec_f32().unwrap(), vec![0.0, 0.0]);
            assert_eq!(grads[2].to_vec_f32().unwrap(), vec![0.0]);
        }
        // The last differentiation frees the graph: same values, then an error (not a panic).
        let loss = w.sqr().unwrap().sum(0, true).unwrap();
        let released = loss.gradients_release(&[&w, &unused]).unwrap();
        assert!(close(&released[0].to_vec_f32().unwrap(), &[2.0, -4.0, 6.0]));
        assert_eq!(released[1].to_vec_f32().unwrap(), vec![0.0, 0.0]);
        assert!(loss.gradients(&[&w]).is_err());
        // Through topk values and a detached branch.
        let (top, _) = w.topk(1, 0, false).unwrap();
        let loss = top.mul(&w.detach().unwrap().sum(0, true).unwrap()).unwrap();
        let grads = loss.gradients(&[&w]).unwrap();
        assert!(close(&grads[0].to_vec_f32().unwrap(), &[0.0, 2.0, 0.0]));
    }
}
