use hamos_api::{join_name, Forward, ParamStore, Result, Tensor};
use rand::RngCore;

use crate::init::fan_in_uniform;

/// `y = x W^T + b` (PyTorch's `nn.Linear`): `weight` `[out, in]`, `bias` `[out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: String,
    bias: Option<String>,
    in_features: usize,
    out_features: usize,
}

impl Linear {
    /// A layer whose parameters are `{prefix}.weight` and `{prefix}.bias`.
    pub fn new(prefix: &str, in_features: usize, out_features: usize, bias: bool) -> Self {
        let bias = bias.then(|| join_name(prefix, "bias"));
        Linear { weight: join_name(prefix, "weight"), bias, in_features, out_features }
    }

    /// Registers `weight` and `bias` with PyTorch's default initialisation.
    pub fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        let backend = params.backend().clone();
        let (i, o) = (self.in_features, self.out_features);
        params.add_trainable(&self.weight, &fan_in_uniform(backend.as_ref(), &[o, i], i, rng)?)?;
        if let Some(bias) = &self.bias {
            params.add_trainable(bias, &fan_in_uniform(backend.as_ref(), &[o], i, rng)?)?;
        }
        Ok(())
    }

    /// `x` `[n, in]` to `[n, out]`.
    pub fn forward(&self, pass: &Forward, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&pass.param(&self.weight)?.t()?)?;
        match &self.bias {
            Some(bias) => y.add(&pass.param(bias)?),
            None => Ok(y),
        }
    }
}
