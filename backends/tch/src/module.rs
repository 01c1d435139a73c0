//! [`ModuleOps`] on libtorch: convolution and pooling through tch's own ops. Arguments arrive
//! validated by the [`Tensor`] wrappers.

use hamos_api::{ModuleOps, Result, Tensor, Window};

use crate::tensor::{finish, TchTensor};

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
}
