//! Network ops: convolution and pooling, kept apart from the element-wise core of
//! [`TensorImpl`](super::TensorImpl) (burn's `ModuleOps` is the model).
//!
//! A backend implements [`ModuleOps`] for its tensor type; every method is required and receives
//! arguments already validated by the [`Tensor`] wrappers below (`[n, c, h, w]` inputs, matching
//! channels, a kernel that fits the padded input), so a backend only computes. Batch norm, linear
//! layers, adaptive average pooling to 1x1 and cross-entropy are compositions of the core ops and
//! live in `hamos-nn`.

use super::Tensor;
use crate::error::{Error, Result};

/// Stride and zero padding of a square 2-D window (convolution or pooling); dilation is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: usize,
    /// Step between windows, in both directions.
    pub stride: usize,
    /// Zeros added on each side of both spatial dims.
    pub padding: usize,
}

impl Window {
    /// A `kernel` x `kernel` window with stride `stride` and no padding.
    pub fn new(kernel: usize, stride: usize) -> Self {
        Window { kernel, stride, padding: 0 }
    }

    /// The same window with `padding` zeros on each side.
    pub fn padded(self, padding: usize) -> Self {
        Window { padding, ..self }
    }

    /// Output size along a spatial dim of input size `size`, or an error naming `op` when the
    /// window does not fit the padded input.
    pub fn output_size(&self, op: &'static str, size: usize) -> Result<usize> {
        if self.kernel == 0 || self.stride == 0 {
            return Err(Error::shape(
                op,
                format!("kernel {} and stride {} must be positive", self.kernel, self.stride),
            ));
        }
        let padded = size + 2 * self.padding;
        if self.kernel > padded {
            return Err(Error::shape(
                op,
                format!(
                    "kernel {} larger than the padded input ({size} + 2 x {} padding)",
                    self.kernel, self.padding
                ),
            ));
        }
        Ok((padded - self.kernel) / self.stride + 1)
    }
}

/// What a backend implements for networks. All methods are required; inputs are validated by
/// [`Tensor::conv2d`], [`Tensor::max_pool2d`] and [`Tensor::avg_pool2d`] before they arrive.
/// Outputs must carry gradients with respect to every tensor operand.
pub trait ModuleOps {
    /// Cross-correlation of `self` `[n, c_in, h, w]` with `weight` `[c_out, c_in, k, k]` (square,
    /// `k = window.kernel`), plus `bias` `[c_out]` when given: `[n, c_out, h_out, w_out]`.
    fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, window: Window) -> Result<Tensor>;
    /// Maximum over each window of `self` `[n, c, h, w]` (padding counts as minus infinity).
    fn max_pool2d(&self, window: Window) -> Result<Tensor>;
    /// Mean over each window of `self` `[n, c, h, w]`; padding zeros count in the mean
    /// (PyTorch's `count_include_pad = true`).
    fn avg_pool2d(&self, window: Window) -> Result<Tensor>;

    /// Provided, optional: a fused [`Tensor::batch_norm_train`] (called with a validated
    /// `[n, c, h, w]` `self` with `n h w >= 2` and `[c]` weight and bias), or `None` to compose it
    /// from the core ops. Overrides must give gradients with respect to `self`, `weight` and
    /// `bias`; the returned statistics are detached.
    fn fused_batch_norm_train(
        &self,
        _weight: &Tensor,
        _bias: &Tensor,
        _eps: f64,
    ) -> Option<Result<BatchNormOutput>> {
        None
    }
}

/// What a training-mode batch normalization gives.
#[derive(Debug, Clone)]
pub struct BatchNormOutput {
    /// `(x - mean) / sqrt(var + eps) * weight + bias`, `[n, c, h, w]`.
    pub output: Tensor,
    /// The batch mean per channel `[c]` (detached).
    pub mean: Tensor,
    /// The biased batch variance per channel `[c]` (detached).
    pub variance: Tensor,
}

impl Tensor {
    /// 2-D convolution (PyTorch's `conv2d` with square kernel, stride and padding; dilation 1,
    /// groups 1): `self` `[n, c_in, h, w]`, `weight` `[c_out, c_in, k, k]`, `bias` `[c_out]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        let (x, w) = (self.dims(), weight.dims());
        if x.len() != 4 || w.len() != 4 {
            return Err(Error::shape(OP, format!("input {x:?} and weight {w:?} must both be rank 4")));
        }
        if x[1] != w[1] {
            return Err(Error::shape(
                OP,
                format!("input {x:?} has {} channels, weight {w:?} expects {}", x[1], w[1]),
            ));
        }
        if w[2] != w[3] {
            return Err(Error::shape(OP, format!("weight {w:?}: only square kernels are supported")));
        }
        if let Some(b) = bias {
            if b.dims() != [w[0]] {
                return Err(Error::shape(
                    OP,
                    format!("bias {:?} must be [{}] for weight {w:?}", b.dims(), w[0]),
                ));
            }
        }
        let window = Window::new(w[2], stride).padded(padding);
        window.output_size(OP, x[2])?;
        window.output_size(OP, x[3])?;
        self.inner().conv2d(weight, bias, window)
    }

    /// Max pooling over `kernel` x `kernel` windows with stride `stride`, no padding.
    pub fn max_pool2d(&self, kernel: usize, stride: usize) -> Result<Tensor> {
        let window = self.pool_window("max_pool2d", Window::new(kernel, stride))?;
        self.inner().max_pool2d(window)
    }

    /// Average pooling over `kernel` x `kernel` windows with stride `stride`, no padding.
    pub fn avg_pool2d(&self, kernel: usize, stride: usize) -> Result<Tensor> {
        let window = self.pool_window("avg_pool2d", Window::new(kernel, stride))?;
        self.inner().avg_pool2d(window)
    }

    /// Training-mode batch normalization of `self` `[n, c, h, w]` over `(n, h, w)` with the
    /// batch mean and biased variance (PyTorch's `batch_norm(training = true)`), affine with
    /// `weight` and `bias` `[c]`; also returns the batch statistics for the running averages.
    /// Backends may fuse it ([`ModuleOps::fused_batch_norm_train`]).
    pub fn batch_norm_train(&self, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<BatchNormOutput> {
        const OP: &str = "batch_norm_train";
        let x = self.dims();
        if x.len() != 4 || weight.dims() != [x[1]] || bias.dims() != [x[1]] {
            return Err(Error::shape(
                OP,
                format!(
                    "input {x:?} needs weight and bias [c], got {:?} and {:?}",
                    weight.dims(),
                    bias.dims()
                ),
            ));
        }
        let count = x[0] * x[2] * x[3];
        if count < 2 {
            return Err(Error::shape(
                OP,
                format!("needs more than one value per channel in training, got {x:?}"),
            ));
        }
        if let Some(fused) = self.inner().fused_batch_norm_train(weight, bias, eps) {
            return fused;
        }
        let channel_sum = |t: &Tensor| -> Result<Tensor> { t.sum(0, true)?.sum(2, true)?.sum(3, true) };
        let per_channel = [1, x[1], 1, 1];
        let mean = channel_sum(self)?.scale(1.0 / count as f64)?;
        let centered = self.sub(&mean)?;
        let variance = channel_sum(&centered.sqr()?)?.scale(1.0 / count as f64)?;
        let normalized = centered.div(&variance.add_scalar(eps)?.sqrt()?)?;
        let output = normalized.mul(&weight.reshape(&per_channel)?)?.add(&bias.reshape(&per_channel)?)?;
        Ok(BatchNormOutput {
            output,
            mean: mean.reshape(&[x[1]])?.detach()?,
            variance: variance.reshape(&[x[1]])?.detach()?,
        })
    }

    /// Adaptive average pooling to 1x1, flattened: `[n, c, h, w]` -> `[n, c]`.
    pub fn global_avg_pool2d(&self) -> Result<Tensor> {
        let x = self.dims();
        if x.len() != 4 {
            return Err(Error::shape("global_avg_pool2d", format!("input {x:?} must be rank 4")));
        }
        self.reshape(&[x[0], x[1], x[2] * x[3]])?.mean(2, false)
    }

    fn pool_window(&self, op: &'static str, window: Window) -> Result<Window> {
        let x = self.dims();
        if x.len() != 4 {
            return Err(Error::shape(op, format!("input {x:?} must be rank 4 [n, c, h, w]")));
        }
        window.output_size(op, x[2])?;
        window.output_size(op, x[3])?;
        Ok(window)
    }
}
