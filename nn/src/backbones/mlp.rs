use hamos_api::{config::positive, join_name, Backbone, Forward, Module, ParamStore, Result, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::check_input;
use crate::layers::Linear;

/// A multilayer perceptron on flattened images: `Linear, ReLU` per hidden layer (PyTorch
/// `nn.Sequential` names `layers.0`, `layers.2`, ...). Default: 28x28 grey, 784-256-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mlp {
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
    /// Widths of the hidden layers; the last is the feature width.
    pub hidden: Vec<usize>,
}

impl Default for Mlp {
    fn default() -> Self {
        Mlp { input: [1, 28, 28], hidden: vec![256, 256] }
    }
}

impl Mlp {
    fn layers(&self, prefix: &str) -> Vec<Linear> {
        let mut width = self.input.iter().product();
        self.hidden
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let layer = Linear::new(&join_name(prefix, &format!("layers.{}", 2 * i)), width, out, true);
                width = out;
                layer
            })
            .collect()
    }
}

#[typetag::serde(name = "mlp")]
impl Backbone for Mlp {
    fn validate(&self) -> Result<()> {
        self.input.iter().try_for_each(|&d| positive("model.input", d))?;
        if self.hidden.is_empty() {
            return Err(hamos_api::Error::invalid("model.hidden", "needs at least one hidden layer"));
        }
        self.hidden.iter().try_for_each(|&d| positive("model.hidden", d))
    }

    fn input_shape(&self) -> [usize; 3] {
        self.input
    }

    fn feature_dim(&self) -> usize {
        self.hidden.last().copied().unwrap_or(0)
    }

    fn build(&self, prefix: &str) -> Result<Box<dyn Module>> {
        Ok(Box::new(MlpNet { input: self.input, layers: self.layers(prefix) }))
    }
}

/// A built [`Mlp`].
#[derive(Debug)]
struct MlpNet {
    input: [usize; 3],
    layers: Vec<Linear>,
}

impl Module for MlpNet {
    fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        self.layers.iter().try_for_each(|layer| layer.init(params, rng))
    }

    fn forward(&self, pass: &Forward, images: &Tensor) -> Result<Tensor> {
        check_input("mlp", images, self.input)?;
        let n = images.dims()[0];
        let mut x = images.reshape(&[n, self.input.iter().product()])?;
        for layer in &self.layers {
            x = layer.forward(pass, &x)?.relu()?;
        }
        Ok(x)
    }
}

hamos_api::register_plugin!(Model, Mlp, "mlp", "multilayer perceptron on flattened images (784-256-256)");
