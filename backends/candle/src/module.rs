//! [`ModuleOps`] on candle: convolution and pooling. Arguments arrive validated by the
//! [`Tensor`] wrappers. On the CPU with `f32` operands the fused kernels run (`fused::conv`:
//! im2col + gemm forward and backward; `fused::pool2d`: pooling with any stride and padding);
//! elsewhere candle's own ops do.

use std::sync::Arc;

use candle_core::shape::Dim;
use candle_core::{CustomOp2, CustomOp3, DType, Device, Tensor as CTensor, D};
use hamos_api::{ModuleOps, Result, Tensor, Window};

use crate::fused::conv::FusedConv2d;
use crate::fused::pool2d::{FusedPool2d, PoolKind};
use crate::tensor::{wrap, CandleTensor, Op};

/// Whether every operand is `f32` on the CPU, which the fused kernels need.
fn fusable(tensors: &[&CTensor]) -> bool {
    tensors.iter().all(|t| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32)
}

impl ModuleOps for CandleTensor {
    fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, window: Window) -> Result<Tensor> {
        let (x, w, b) = self.conv_operands(weight, bias)?;
        if !fusable(&[x, w]) || b.is_some_and(|b| !fusable(&[b])) {
            return self.native_conv2d(weight, bias, window);
        }
        let op = FusedConv2d { stride: window.stride, padding: window.padding };
        let (x, w) = (x.contiguous().op("conv2d")?, w.contiguous().op("conv2d")?);
        let out = match b {
            Some(b) => {
                let op: Arc<Box<dyn CustomOp3 + Send + Sync>> = Arc::new(Box::new(op));
                x.apply_op3_arc(&w, &b.contiguous().op("conv2d")?, op)
            }
            None => {
                let op: Arc<Box<dyn CustomOp2 + Send + Sync>> = Arc::new(Box::new(op));
                x.apply_op2_arc(&w, op)
            }
        };
        wrap(out.op("conv2d")?)
    }

    fn max_pool2d(&self, window: Window) -> Result<Tensor> {
        self.pool(PoolKind::Max, window)
    }

    fn avg_pool2d(&self, window: Window) -> Result<Tensor> {
        self.pool(PoolKind::Avg, window)
    }

    /// One fused op (`fused::batch_norm`) on the CPU with `f32` operands; elsewhere `None`, so
    /// the composition of core ops runs.
    fn fused_batch_norm_train(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Option<Result<hamos_api::BatchNormOutput>> {
        const OP: &str = "batch_norm_train";
        let operands = weight
            .expect_backend::<CandleTensor>(OP, self)
            .and_then(|w| Ok((w.raw(), bias.expect_backend::<CandleTensor>(OP, self)?.raw())));
        let (w, b) = match operands {
            Ok(operands) => operands,
            Err(e) => return Some(Err(e)),
        };
        if !fusable(&[self.raw(), w, b]) {
            return None;
        }
        let run = || -> Result<hamos_api::BatchNormOutput> {
            let (output, mean, variance, recipe) =
                crate::fused::batch_norm::batch_norm_train(self.raw(), w, b, eps).op(OP)?;
            Ok(hamos_api::BatchNormOutput {
                output: Tensor::from_impl(CandleTensor::with_recipe(output, recipe)),
                mean: wrap(mean)?,
                variance: wrap(variance)?,
            })
        };
        Some(run())
    }
}

impl CandleTensor {
    fn conv_operands<'a>(
        &'a self,
        weight: &'a Tensor,
        bias: Option<&'a Tensor>,
    ) -> Result<(&'a CTensor, &'a CTensor, Option<&'a CTensor>)> {
        let w = weight.expect_backend::<CandleTensor>("conv2d", self)?.raw();
        let b =
            bias.map(|b| b.expect_backend::<CandleTensor>("conv2d", self).map(|b| b.raw())).transpose()?;
        Ok((self.raw(), w, b))
    }

    fn pool(&self, kind: PoolKind, window: Window) -> Result<Tensor> {
        if !fusable(&[self.raw()]) {
            return self.native_pool2d(kind, window);
        }
        let name = match kind {
            PoolKind::Max => "max_pool2d",
            PoolKind::Avg => "avg_pool2d",
        };
        // A ReLU'd batch-norm output: one op from the batch norm's input.
        let pair = (window.kernel, window.stride, window.padding) == (2, 2, 0);
        if let Some(fused) =
            self.recipe().filter(|_| kind == PoolKind::Max && pair).and_then(|r| r.max_pool2())
        {
            return wrap(fused.op(name)?);
        }
        let op = FusedPool2d::new(kind, window.kernel, window.stride, window.padding);
        wrap(self.raw().contiguous().op(name)?.apply_op1(op).op(name)?)
    }

    /// [`ModuleOps::conv2d`] through candle's own convolution (the path off the CPU), for
    /// comparisons with the fused kernel.
    #[doc(hidden)]
    pub fn native_conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, window: Window) -> Result<Tensor> {
        let (x, w, b) = self.conv_operands(weight, bias)?;
        let out = x.conv2d(w, window.padding, window.stride, 1, 1).op("conv2d")?;
        let out = match b {
            Some(b) => out.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1)).op("conv2d")?).op("conv2d")?,
            None => out,
        };
        wrap(out)
    }

    /// [`ModuleOps::max_pool2d`] through candle's own pooling, whose backward needs
    /// kernel == stride.
    #[doc(hidden)]
    pub fn native_max_pool2d(&self, window: Window) -> Result<Tensor> {
        self.native_pool2d(PoolKind::Max, window)
    }

    /// [`ModuleOps::avg_pool2d`] through candle's own pooling, whose backward needs
    /// kernel == stride.
    #[doc(hidden)]
    pub fn native_avg_pool2d(&self, window: Window) -> Result<Tensor> {
        self.native_pool2d(PoolKind::Avg, window)
    }

    fn native_pool2d(&self, kind: PoolKind, window: Window) -> Result<Tensor> {
        let k = (window.kernel, window.kernel);
        let stride = (window.stride, window.stride);
        let out = match kind {
            PoolKind::Max => {
                pad(self.raw(), window.padding, f32::NEG_INFINITY)?.max_pool2d_with_stride(k, stride)
            }
            PoolKind::Avg => pad(self.raw(), window.padding, 0.0)?.avg_pool2d_with_stride(k, stride),
        };
        wrap(out.op("pool2d")?)
    }
}

/// `x` `[n, c, h, w]` with `padding` entries of `value` on each side of both spatial dims.
fn pad(x: &CTensor, padding: usize, value: f32) -> Result<CTensor> {
    if padding == 0 {
        return Ok(x.clone());
    }
    let mut out = x.clone();
    for dim in [D::Minus2, D::Minus1] {
        let mut dims = out.dims().to_vec();
        let axis = dim.to_index(out.shape(), "pad").op("pad")?;
        dims[axis] = padding;
        let side = CTensor::full(value, dims, out.device()).op("pad")?.to_dtype(out.dtype()).op("pad")?;
        out = CTensor::cat(&[&side, &out, &side], axis).op("pad")?;
    }
    Ok(out)
}
