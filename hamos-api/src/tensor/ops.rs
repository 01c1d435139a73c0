//! Friendly names for the required ops of [`TensorImpl`], on [`Tensor`].

use std::sync::Arc;

use super::{BinaryOp, CmpOp, DType, ReduceOp, Tensor, UnaryOp};
use crate::backend::Backend;
use crate::error::{Error, Result};

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
            self.inner().binary(BinaryOp::$op, rhs)
        }
    )*};
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self) -> Result<Tensor> {
            self.inner().unary(UnaryOp::$op)
        }
    )*};
}

macro_rules! compare_methods {
    ($($(#[$doc:meta])* $name:ident => $op:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> {
            self.inner().compare(CmpOp::$op, rhs)
        }
    )*};
}

impl Tensor {
    /// The shape.
    pub fn dims(&self) -> Vec<usize> {
        self.inner().dims()
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.dims().len()
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.dims().iter().product()
    }

    /// The size of `dim`, or an error naming `op` when the rank is too small.
    pub fn dim(&self, op: &'static str, dim: usize) -> Result<usize> {
        let dims = self.dims();
        dims.get(dim)
            .copied()
            .ok_or_else(|| Error::shape(op, format!("dim {dim} out of range for shape {dims:?}")))
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.inner().dtype()
    }

    /// The backend that made this tensor.
    pub fn backend(&self) -> Arc<dyn Backend> {
        self.inner().backend()
    }

    /// `backend device`, for messages.
    pub fn location(&self) -> String {
        format!("{} {}", self.inner().backend_name(), self.inner().device_name())
    }

    /// Same elements, new shape.
    pub fn reshape(&self, dims: &[usize]) -> Result<Tensor> {
        self.inner().reshape(dims)
    }

    /// Swaps two dims.
    pub fn transpose(&self, dim0: usize, dim1: usize) -> Result<Tensor> {
        self.inner().transpose(dim0, dim1)
    }

    /// Swaps the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        let rank = self.rank();
        if rank < 2 {
            return Err(Error::shape("t", format!("needs rank >= 2, got {:?}", self.dims())));
        }
        self.transpose(rank - 2, rank - 1)
    }

    /// The slice `start..start + len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        self.inner().narrow(dim, start, len)
    }

    /// Expands to `dims` by broadcasting.
    pub fn broadcast_as(&self, dims: &[usize]) -> Result<Tensor> {
        self.inner().broadcast_as(dims)
    }

    binary_methods! {
        /// Broadcasting `self + rhs`.
        add => Add,
        /// Broadcasting `self - rhs`.
        sub => Sub,
        /// Broadcasting `self * rhs`.
        mul => Mul,
        /// Broadcasting `self / rhs`.
        div => Div,
        /// Broadcasting element-wise maximum.
        maximum => Maximum,
        /// Broadcasting element-wise minimum.
        minimum => Minimum,
    }

    unary_methods! {
        /// Element-wise `e^x`.
        exp => Exp,
        /// Element-wise natural log.
        log => Log,
        /// Element-wise square root.
        sqrt => Sqrt,
        /// Element-wise cosine.
        cos => Cos,
        /// Element-wise sine.
        sin => Sin,
        /// Element-wise absolute value.
        abs => Abs,
        /// Element-wise `max(x, 0)`.
        relu => Relu,
        /// Element-wise hyperbolic tangent.
        tanh => Tanh,
    }

    compare_methods! {
        /// Mask of `self == rhs`.
        eq => Eq,
        /// Mask of `self != rhs`.
        ne => Ne,
        /// Mask of `self < rhs`.
        lt => Lt,
        /// Mask of `self <= rhs`.
        le => Le,
        /// Mask of `self > rhs`.
        gt => Gt,
        /// Mask of `self >= rhs`.
        ge => Ge,
    }

    /// `self * mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.inner().affine(mul, add)
    }

    /// `self * factor`.
    pub fn scale(&self, factor: f64) -> Result<Tensor> {
        self.affine(factor, 0.0)
    }

    /// `self + value`.
    pub fn add_scalar(&self, value: f64) -> Result<Tensor> {
        self.affine(1.0, value)
    }

    /// `-self`.
    pub fn neg(&self) -> Result<Tensor> {
        self.affine(-1.0, 0.0)
    }

    /// `self * self`.
    pub fn sqr(&self) -> Result<Tensor> {
        self.mul(self)
    }

    /// Clamps into `[min, max]`.
    pub fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        self.inner().clamp(min, max)
    }

    /// Sum along `dim`.
    pub fn sum(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.inner().reduce(ReduceOp::Sum, dim, keepdim)
    }

    /// Maximum along `dim`.
    pub fn max(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.inner().reduce(ReduceOp::Max, dim, keepdim)
    }

    /// Minimum along `dim`.
    pub fn min(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.inner().reduce(ReduceOp::Min, dim, keepdim)
    }

    /// Index of the maximum along `dim`, as `I64`.
    pub fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.inner().argmax(dim, keepdim)
    }

    /// Matrix product over the last two dims.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.inner().matmul(rhs)
    }

    /// The `k` largest (`largest = true`) or smallest values along `dim`, sorted, with indices.
    pub fn topk(&self, k: usize, dim: usize, largest: bool) -> Result<(Tensor, Tensor)> {
        self.inner().topk(k, dim, largest)
    }

    /// The `k`-th smallest value (1-based) along `dim` and its index, `dim` kept at size 1.
    pub fn kth_smallest(&self, k: usize, dim: usize) -> Result<(Tensor, Tensor)> {
        let width = self.dim("kth_smallest", dim)?;
        if k == 0 || k > width {
            return Err(Error::shape("kth_smallest", format!("k = {k} must be in 1..={width}")));
        }
        self.inner().kth_smallest(k, dim)
    }

    /// Slices `indices` (rank-1 `I64`) along `dim`.
    pub fn index_select(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        self.inner().index_select(dim, indices)
    }

    /// Gathers along `dim`.
    pub fn gather(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        self.inner().gather(dim, indices)
    }

    /// `self` as a mask: `on_true` where non-zero, else `on_false`.
    pub fn where_mask(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        self.inner().where_mask(on_true, on_false)
    }

    /// Converts the element type.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        self.inner().to_dtype(dtype)
    }

    /// Elements on the host as `f32`.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.inner().to_vec_f32()
    }

    /// Elements on the host as `i64`.
    pub fn to_vec_i64(&self) -> Result<Vec<i64>> {
        self.inner().to_vec_i64()
    }

    /// Rows of a rank-2 tensor on the host.
    pub fn to_rows_f32(&self) -> Result<Vec<Vec<f32>>> {
        let dims = self.dims();
        let [_, cols] = dims[..] else {
            return Err(Error::shape("to_rows_f32", format!("needs rank 2, got {dims:?}")));
        };
        Ok(self.to_vec_f32()?.chunks(cols.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// The single element of a one-element tensor.
    pub fn to_scalar_f32(&self) -> Result<f32> {
        let values = self.to_vec_f32()?;
        match values[..] {
            [v] => Ok(v),
            _ => {
                Err(Error::shape("to_scalar_f32", format!("needs one element, got shape {:?}", self.dims())))
            }
        }
    }

    /// The same values without autograd history.
    pub fn detach(&self) -> Result<Tensor> {
        self.inner().detach()
    }

    /// Gradients of this scalar with respect to `wrt`.
    pub fn gradients(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        if self.elem_count() != 1 {
            return Err(Error::shape(
                "gradients",
                format!("needs a scalar loss, got shape {:?}", self.dims()),
            ));
        }
        self.inner().gradients(wrt)
    }

    /// [`Tensor::gradients`] when this graph will not be differentiated again (a training
    /// step's loss): backends may free its saved buffers on the way, and a later
    /// differentiation of the same graph may then fail.
    pub fn gradients_release(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        if self.elem_count() != 1 {
            return Err(Error::shape(
                "gradients",
                format!("needs a scalar loss, got shape {:?}", self.dims()),
            ));
        }
        self.inner().gradients_release(wrt)
    }

    /// Concatenates along `dim`; all tensors must share a backend.
    pub fn cat(tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = tensors.first().ok_or_else(|| Error::shape("cat", "needs at least one tensor"))?;
        first.backend().cat(tensors, dim)
    }

    /// A tensor filled with `value`, shaped like `self`, on the same backend.
    pub fn full_like(&self, value: f32) -> Result<Tensor> {
        self.backend().full(value, &self.dims())
    }

    /// A one-element `[1]` constant on the same backend; it broadcasts against any shape.
    pub fn scalar_like(&self, value: f32) -> Result<Tensor> {
        self.backend().from_f32(&[value], &[1])
    }
}
