use hamos_api::{join_name, Forward, ParamStore, Result, Tensor};
use rand::RngCore;

use crate::init::fan_in_uniform;

/// A square 2-D convolution (PyTorch's `nn.Conv2d`, dilation 1, groups 1): `weight`
/// `[out, in, k, k]`, optional `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: String,
    bias_name: String,
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
}

impl Conv2d {
    /// A `kernel` x `kernel` convolution without bias, parameters under `prefix`.
    pub fn new(prefix: &str, in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Conv2d {
            weight: join_name(prefix, "weight"),
            bias_name: join_name(prefix, "bias"),
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            bias: false,
        }
    }

    /// With stride `stride`.
    pub fn stride(self, stride: usize) -> Self {
        Conv2d { stride, ..self }
    }

    /// With `padding` zeros on each side.
    pub fn padding(self, padding: usize) -> Self {
        Conv2d { padding, ..self }
    }

    /// With a bias.
    pub fn with_bias(self) -> Self {
        Conv2d { bias: true, ..self }
    }

    /// Registers `weight` (and `bias`) with PyTorch's default initialisation.
    pub fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        let backend = params.backend().clone();
        let fan_in = self.in_channels * self.kernel * self.kernel;
        let dims = [self.out_channels, self.in_channels, self.kernel, self.kernel];
        params.add_trainable(&self.weight, &fan_in_uniform(backend.as_ref(), &dims, fan_in, rng)?)?;
        if self.bias {
            let bias = fan_in_uniform(backend.as_ref(), &[self.out_channels], fan_in, rng)?;
            params.add_trainable(&self.bias_name, &bias)?;
        }
        Ok(())
    }

    /// `x` `[n, in, h, w]` to `[n, out, h', w']`.
    pub fn forward(&self, pass: &Forward, x: &Tensor) -> Result<Tensor> {
        let weight = pass.param(&self.weight)?;
        let bias = if self.bias { Some(pass.param(&self.bias_name)?) } else { None };
        x.conv2d(&weight, bias.as_ref(), self.stride, self.padding)
    }
}
