use hamos_api::{join_name, Forward, ParamStore, Result, Tensor};
use rand::RngCore;

use crate::init::fan_in_uniform;

/// `y = x W^T + b` (PyTorch's `nn.Linear`): `weight` `[out, in]`, `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    prefix: String,
    in_features: usize,
    out_features: usize,
    bias: bool,
}

impl Linear {
    /// A layer whose parameters are `{prefix}.weight` and `{prefix}.bias`.
    pub fn new(prefix: &str, in_features: usize, out_features: usize, bias: bool) -> Self {
        Linear { prefix: prefix.to_string(), in_features, out_features, bias }
    }

    /// Registers `weight` and `bias` with PyTorch's default initialisation.
    pub fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        let backend = params.backend().clone();
        let (i, o) = (self.in_features, self.out_features);
        params.add_trainable(&self.name("weight"), &fan_in_uniform(backend.as_ref(), &[o, i], i, rng)?)?;
        if self.bias {
            params.add_trainable(&self.name("bias"), &fan_in_uniform(backend.as_ref(), &[o], i, rng)?)?;
        }
        Ok(())
    }

    /// `x` `[n, in]` to `[n, out]`.
    pub fn forward(&self, pass: &Forward, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&pass.param(&self.name("weight"))?.t()?)?;
        if self.bias {
            y.add(&pass.param(&self.name("bias"))?)
        } else {
            Ok(y)
        }
    }

    fn name(&self, leaf: &str) -> String {
        join_name(&self.prefix, leaf)
    }
}
