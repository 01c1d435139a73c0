use hamos_api::{config::positive, join_name, Backbone, Forward, Module, ParamStore, Result, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::check_input;
use crate::layers::{BatchNorm2d, Conv2d};

/// A small CNN for 28x28 grey images: three `conv3x3 (pad 1), BN, ReLU` stages of 32, 64 and
/// 128 channels, max-pooling by 2 after the first two, then global average pooling: 128
/// features. Names `conv1`, `bn1`, ..., `conv3`, `bn3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmallCnn {
    /// Input `[channels, height, width]`; height and width must be at least 4 (two poolings).
    pub input: [usize; 3],
    /// Channels of the three stages.
    pub channels: [usize; 3],
}

impl Default for SmallCnn {
    fn default() -> Self {
        SmallCnn { input: [1, 28, 28], channels: [32, 64, 128] }
    }
}

impl SmallCnn {
    fn stages(&self, prefix: &str) -> Vec<(Conv2d, BatchNorm2d)> {
        let mut width = self.input[0];
        (0..3)
            .map(|i| {
                let out = self.channels[i];
                let conv =
                    Conv2d::new(&join_name(prefix, &format!("conv{}", i + 1)), width, out, 3).padding(1);
                let bn = BatchNorm2d::new(&join_name(prefix, &format!("bn{}", i + 1)), out);
                width = out;
                (conv, bn)
            })
            .collect()
    }
}

#[typetag::serde(name = "small_cnn")]
impl Backbone for SmallCnn {
    fn validate(&self) -> Result<()> {
        self.input.iter().chain(&self.channels).try_for_each(|&d| positive("model.input/channels", d))?;
        if self.input[1] < 4 || self.input[2] < 4 {
            return Err(hamos_api::Error::invalid("model.input", "height and width must be at least 4"));
        }
        Ok(())
    }

    fn input_shape(&self) -> [usize; 3] {
        self.input
    }

    fn feature_dim(&self) -> usize {
        self.channels[2]
    }

    fn build(&self, prefix: &str) -> Result<Box<dyn Module>> {
        Ok(Box::new(SmallCnnNet { input: self.input, stages: self.stages(prefix) }))
    }
}

/// A built [`SmallCnn`].
#[derive(Debug)]
struct SmallCnnNet {
    input: [usize; 3],
    stages: Vec<(Conv2d, BatchNorm2d)>,
}

impl Module for SmallCnnNet {
    fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        for (conv, bn) in &self.stages {
            conv.init(params, rng)?;
            bn.init(params)?;
        }
        Ok(())
    }

    fn forward(&self, pass: &Forward, images: &Tensor) -> Result<Tensor> {
        check_input("small_cnn", images, self.input)?;
        let mut x = images.clone();
        for (i, (conv, bn)) in self.stages.iter().enumerate() {
            x = bn.forward(pass, &conv.forward(pass, &x)?)?.relu()?;
            if i < 2 {
                x = x.max_pool2d(2, 2)?;
            }
        }
        x.global_avg_pool2d()
    }
}

hamos_api::register_plugin!(
    Model,
    SmallCnn,
    "small_cnn",
    "3-stage CNN for 28x28 grey images (32-64-128 channels, 128 features)"
);
