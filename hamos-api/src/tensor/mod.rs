//! The shared tensor trait.
//!
//! [`TensorImpl`] is what a backend implements: about thirty *required* ops, each returning
//! [`Result`]. [`Tensor`] is the handle every plugin uses: it wraps a boxed `TensorImpl`, exposes
//! the required ops under friendly names (`ops.rs`), and adds *provided* helpers built only on
//! them (`helpers.rs`: l2-normalize, logsumexp, log-softmax, pairwise distances, ...). A plugin
//! written against [`Tensor`] runs unchanged on every backend, and gradients flow through every
//! differentiable op on every backend.
//!
//! Why a boxed object rather than a generic: plugins are chosen by name through `typetag`, which
//! rejects generic traits, so plugin traits take `&Tensor`. The cost is one allocation and one
//! virtual call per op (measured in the README).

mod bank_kernels;
mod helpers;
mod module_ops;
mod neighbours;
mod ops;
mod selection;

pub use bank_kernels::{
    generic_class_gram, generic_class_logsumexp, generic_rows_to_host, BankKernels, GenericBankKernels,
};
pub(crate) use helpers::valid_row_mask;
pub use module_ops::{BatchNormOutput, ModuleOps, Window};
pub use neighbours::generic_class_kth_nearest;
pub use selection::{resolve_kth_tie, select_kth, KthSelection};

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// Element type of a tensor. Values are `F32`; indices (argmax, top-k, labels) are `I64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer.
    I64,
}

/// Broadcasting element-wise binary ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
    /// `max(a, b)`
    Maximum,
    /// `min(a, b)`
    Minimum,
}

/// Element-wise unary ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `e^x`
    Exp,
    /// natural log
    Log,
    /// square root
    Sqrt,
    /// cosine
    Cos,
    /// sine
    Sin,
    /// absolute value
    Abs,
    /// `max(x, 0)`
    Relu,
    /// hyperbolic tangent
    Tanh,
}

/// Reductions along one dim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    /// sum
    Sum,
    /// maximum
    Max,
    /// minimum
    Min,
}

/// Broadcasting comparisons; the result is an `F32` mask of 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `a == b`
    Eq,
    /// `a != b`
    Ne,
    /// `a < b`
    Lt,
    /// `a <= b`
    Le,
    /// `a > b`
    Gt,
    /// `a >= b`
    Ge,
}

/// What a backend implements: the required ops of the shared tensor trait.
///
/// The network ops (convolution, pooling) are a group of their own, the supertrait
/// [`ModuleOps`]. Every method here is required except `gradients_release` and `kth_smallest`; [`Tensor`] builds everything else on top of them (the class-bank kernels of synthesis included: a backend may fuse those through [`BankKernels`], an extension of its [`Backend`]). Operands of
/// binary ops arrive as [`Tensor`] and must be downcast with [`Tensor::downcast_ref`]; an operand
/// of another backend must give [`Error::BackendMismatch`], never a panic. Dims are `usize` and
/// must be checked against the rank (no negative indexing). Binary ops and comparisons broadcast
/// with numpy rules. Reductions and `argmax` take an explicit `keepdim`.
pub trait TensorImpl: ModuleOps + Send + fmt::Debug + 'static {
    /// Name of the backend, e.g. `candle`.
    fn backend_name(&self) -> &'static str;
    /// Device, e.g. `cpu` or `cuda:0`.
    fn device_name(&self) -> String;
    /// The backend (and device) that made this tensor, to create more tensors next to it.
    fn backend(&self) -> Arc<dyn Backend>;
    /// For downcasting operands.
    fn as_any(&self) -> &dyn Any;
    /// A cheap clone sharing storage (and autograd history).
    fn boxed_clone(&self) -> Box<dyn TensorImpl>;
    /// The shape.
    fn dims(&self) -> Vec<usize>;
    /// The element type.
    fn dtype(&self) -> DType;

    /// Same elements, new shape (same element count).
    fn reshape(&self, dims: &[usize]) -> Result<Tensor>;
    /// Swaps two dims.
    fn transpose(&self, dim0: usize, dim1: usize) -> Result<Tensor>;
    /// The slice `start..start + len` along `dim`.
    fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor>;
    /// Expands size-1 dims (and prepends dims) to `dims`.
    fn broadcast_as(&self, dims: &[usize]) -> Result<Tensor>;
    /// Broadcasting element-wise `op(self, rhs)`.
    fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor>;
    /// Element-wise `op(self)`.
    fn unary(&self, op: UnaryOp) -> Result<Tensor>;
    /// `self * mul + add`.
    fn affine(&self, mul: f64, add: f64) -> Result<Tensor>;
    /// `min(max(self, min), max)`.
    fn clamp(&self, min: f64, max: f64) -> Result<Tensor>;
    /// Reduces along `dim`.
    fn reduce(&self, op: ReduceOp, dim: usize, keepdim: bool) -> Result<Tensor>;
    /// Index of the maximum along `dim` (`I64`); ties give the first index.
    fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor>;
    /// Matrix product of the last two dims, batched over equal leading dims.
    fn matmul(&self, rhs: &Tensor) -> Result<Tensor>;
    /// The `k` largest (or smallest) values along `dim`, sorted, and their `I64` indices.
    /// Values are differentiable. Exact, whatever the width of `dim`.
    fn topk(&self, k: usize, dim: usize, largest: bool) -> Result<(Tensor, Tensor)>;
    /// Picks the slices `indices` (rank-1 `I64`) along `dim`. On the CPU an index out of range
    /// is an error; on other devices checking would copy the indices to the host (a device sync
    /// on every call), so there the caller vouches for them (the same holds for `gather`).
    fn index_select(&self, dim: usize, indices: &Tensor) -> Result<Tensor>;
    /// `out[i][j] = self[i][indices[i][j]]` along `dim` (`indices` has the rank of `self`).
    fn gather(&self, dim: usize, indices: &Tensor) -> Result<Tensor>;
    /// Broadcasting comparison, an `F32` mask of 0 and 1.
    fn compare(&self, op: CmpOp, rhs: &Tensor) -> Result<Tensor>;
    /// `self` is a mask: where it is non-zero take `on_true`, else `on_false` (broadcasting).
    fn where_mask(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor>;
    /// Converts the element type.
    fn to_dtype(&self, dtype: DType) -> Result<Tensor>;
    /// Copies the elements to the host, row-major, as `f32`.
    fn to_vec_f32(&self) -> Result<Vec<f32>>;
    /// Copies the elements to the host, row-major, as `i64`.
    fn to_vec_i64(&self) -> Result<Vec<i64>>;
    /// The same values without autograd history.
    fn detach(&self) -> Result<Tensor>;
    /// Gradients of this scalar with respect to each of `wrt` (zeros where it does not
    /// depend on one). Does not accumulate into any state: calling it twice gives the same.
    fn gradients(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>>;

    /// Provided: [`TensorImpl::gradients`] for the last time on this graph. Backends may free
    /// the graph's saved buffers while they go (libtorch frees each as soon as its backward has
    /// run, so the gradients reuse that memory), after which differentiating the same graph
    /// again fails with an error. The default is [`TensorImpl::gradients`].
    fn gradients_release(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        self.gradients(wrt)
    }

    /// Provided: the `k`-th smallest value along `dim` (1-based `k`) and its `I64` index, both
    /// with `dim` kept at size 1. The default takes it from [`TensorImpl::topk`]; backends may
    /// override it with a selection that does not sort.
    fn kth_smallest(&self, k: usize, dim: usize) -> Result<(Tensor, Tensor)> {
        let (values, indices) = self.topk(k, dim, false)?;
        Ok((values.narrow(dim, k - 1, 1)?, indices.narrow(dim, k - 1, 1)?))
    }
}

/// A tensor of any compiled backend. Cheap to clone (storage is shared).
pub struct Tensor(Box<dyn TensorImpl>);

impl Tensor {
    /// Wraps a backend tensor.
    pub fn from_impl(inner: impl TensorImpl) -> Self {
        Tensor(Box::new(inner))
    }

    /// The backend tensor.
    pub fn inner(&self) -> &dyn TensorImpl {
        self.0.as_ref()
    }

    /// The backend tensor as its concrete type, if it is one.
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.as_any().downcast_ref::<T>()
    }

    /// Downcasts an operand of `op`, or says which backends clashed.
    pub fn expect_backend<T: TensorImpl>(&self, op: &'static str, lhs: &dyn TensorImpl) -> Result<&T> {
        self.downcast_ref::<T>().ok_or_else(|| Error::BackendMismatch {
            op,
            left: format!("{} {}", lhs.backend_name(), lhs.device_name()),
            right: format!("{} {}", self.0.backend_name(), self.0.device_name()),
        })
    }
}

/// The numpy-style broadcast of two shapes, for backends whose ops need equal shapes.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |dims: &[usize], i: usize| {
        let offset = rank - dims.len();
        if i < offset {
            1
        } else {
            dims[i - offset]
        }
    };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(Error::shape(op, format!("shapes {a:?} and {b:?} do not broadcast"))),
        })
        .collect()
}

impl Clone for Tensor {
    fn clone(&self) -> Self {
        Tensor(self.0.boxed_clone())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor[{} {} {:?} {:?}]",
            self.0.backend_name(),
            self.0.device_name(),
            self.0.dtype(),
            self.0.dims()
        )
    }
}
