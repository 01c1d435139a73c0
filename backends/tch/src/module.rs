//! [`ModuleOps`] on libtorch: convolution and pooling through tch's own ops. Arguments arrive
//! validated by the [`Tensor`] wrappers.

use hamos_api::{BatchNormOutput, ModuleOps, Result, Tensor, Window};

use crate::tensor::{finish, tch_err, TchTensor};

impl ModuleOps for TchTensor {
    fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, window: Window) -> Result<Tensor> {
        let w = self.operand("conv2d", weight)?;
        let b = bias.map(|b| self.operand("conv2d", b)).transpose()?;
        let (s, p) = (window.stride as i64, window.padding as i64);
        finish("conv2d", self.raw().f_conv2d(w, b, [s, s], [p, p], [1, 1], 1))
    }

    fn max_pool2d(&self, window: Window) -> Result<Tensor> {
        let (k, s, p) = (window.kernel as i64, window.stride as i64, window.padding as i64);
        finish("max_pool2d", self.raw().f_max_pool2d([k, k], [s, s], [p, p], [1, 1], false))
    }

    fn avg_pool2d(&self, window: Window) -> Result<Tensor> {
        let (k, s, p) = (window.kernel as i64, window.stride as i64, window.padding as i64);
        finish("avg_pool2d", self.raw().f_avg_pool2d([k, k], [s, s], [p, p], false, true, None::<i64>))
    }

    /// libtorch's own kernel: `native_batch_norm` in training mode without running buffers (the
    /// caller blends them), giving the batch mean and `1 / sqrt(var + eps)`.
    fn fused_batch_norm_train(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        eps: f64,
    ) -> Option<Result<BatchNormOutput>> {
        let run = || -> Result<BatchNormOutput> {
            let (w, b) = (self.operand("batch_norm_train", weight)?, self.operand("batch_norm_train", bias)?);
            let none: Option<&tch::Tensor> = None;
            let (output, mean, invstd) = self
                .raw()
                .f_native_batch_norm(Some(w), Some(b), none, none, true, 0.0, eps)
                .map_err(tch_err("batch_norm_train"))?;
            let variance = invstd
                .f_detach()
                .and_then(|t| t.f_pow_tensor_scalar(-2.0))
                .and_then(|t| t.f_sub_scalar(eps))
                .map_err(tch_err("batch_norm_train"))?;
            Ok(BatchNormOutput {
                output: finish("batch_norm_train", Ok(output))?,
                mean: finish("batch_norm_train", mean.f_detach())?,
                variance: finish("batch_norm_train", Ok(variance))?,
            })
        };
        Some(run())
    }
}
