//! [`TchTensor`]: a libtorch tensor behind the shared tensor trait.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use hamos_api::{Backend, BinaryOp, CmpOp, DType, Error, ReduceOp, Result, Tensor, TensorImpl, UnaryOp};
use tch::{Kind, TchError};

use crate::backend::TchBackend;

mod checks;
use crate::BACKEND_NAME;
pub(crate) use checks::finish;
use checks::{broadcast_shapes, check_index_dtype, check_indices, device_name, kind_of};

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
mod tests;
