use hamos_api::{config::positive, join_name, Backbone, Forward, Module, ParamStore, Result, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::check_input;
use crate::layers::{BatchNorm2d, Conv2d};

/// OpenOOD's `ResNet18_32x32` for 32x32 RGB images: a 3x3 stem with stride 1 and no max-pool,
/// BasicBlocks `[2, 2, 2, 2]` of 64, 128, 256 and 512 channels, global average pooling, 512
/// features. Parameter names are OpenOOD's (`conv1.weight`, `layer2.0.shortcut.0.weight`, ...),
/// so its PyTorch checkpoints load unchanged. Meant for GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResNet18Cifar {
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
}

impl Default for ResNet18Cifar {
    fn default() -> Self {
        ResNet18Cifar { input: [3, 32, 32] }
    }
}

/// One BasicBlock: two 3x3 convolutions with batch norm, and a 1x1 projection shortcut when
/// the stride or the width changes.
#[derive(Debug)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    shortcut: Option<(Conv2d, BatchNorm2d)>,
}

impl BasicBlock {
    fn new(prefix: &str, in_planes: usize, planes: usize, stride: usize) -> Self {
        let name = |leaf: &str| join_name(prefix, leaf);
        let shortcut = (stride != 1 || in_planes != planes).then(|| {
            (
                Conv2d::new(&name("shortcut.0"), in_planes, planes, 1).stride(stride),
                BatchNorm2d::new(&name("shortcut.1"), planes),
            )
        });
        BasicBlock {
            conv1: Conv2d::new(&name("conv1"), in_planes, planes, 3).stride(stride).padding(1),
            bn1: BatchNorm2d::new(&name("bn1"), planes),
            conv2: Conv2d::new(&name("conv2"), planes, planes, 3).padding(1),
            bn2: BatchNorm2d::new(&name("bn2"), planes),
            shortcut,
        }
    }

    fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        self.conv1.init(params, rng)?;
        self.bn1.init(params)?;
        self.conv2.init(params, rng)?;
        self.bn2.init(params)?;
        if let Some((conv, bn)) = &self.shortcut {
            conv.init(params, rng)?;
            bn.init(params)?;
        }
        Ok(())
    }

    fn forward(&self, pass: &Forward, x: &Tensor) -> Result<Tensor> {
        let out = self.bn1.forward(pass, &self.conv1.forward(pass, x)?)?.relu()?;
        let out = self.bn2.forward(pass, &self.conv2.forward(pass, &out)?)?;
        let skip = match &self.shortcut {
            Some((conv, bn)) => bn.forward(pass, &conv.forward(pass, x)?)?,
            None => x.clone(),
        };
        out.add(&skip)?.relu()
    }
}

impl ResNet18Cifar {
    fn stem(&self, prefix: &str) -> (Conv2d, BatchNorm2d) {
        (
            Conv2d::new(&join_name(prefix, "conv1"), self.input[0], 64, 3).padding(1),
            BatchNorm2d::new(&join_name(prefix, "bn1"), 64),
        )
    }

    fn blocks(&self, prefix: &str) -> Vec<BasicBlock> {
        let mut in_planes = 64;
        let mut blocks = Vec::with_capacity(8);
        for (layer, (planes, stride)) in [(64, 1), (128, 2), (256, 2), (512, 2)].into_iter().enumerate() {
            for index in 0..2 {
                let name = join_name(prefix, &format!("layer{}.{index}", layer + 1));
                blocks.push(BasicBlock::new(&name, in_planes, planes, if index == 0 { stride } else { 1 }));
                in_planes = planes;
            }
        }
        blocks
    }
}

#[typetag::serde(name = "resnet18_cifar")]
impl Backbone for ResNet18Cifar {
    fn validate(&self) -> Result<()> {
        self.input.iter().try_for_each(|&d| positive("model.input", d))
    }

    fn input_shape(&self) -> [usize; 3] {
        self.input
    }

    fn feature_dim(&self) -> usize {
        512
    }

    fn build(&self, prefix: &str) -> Result<Box<dyn Module>> {
        Ok(Box::new(ResNet18Net { input: self.input, stem: self.stem(prefix), blocks: self.blocks(prefix) }))
    }
}

/// A built [`ResNet18Cifar`].
#[derive(Debug)]
struct ResNet18Net {
    input: [usize; 3],
    stem: (Conv2d, BatchNorm2d),
    blocks: Vec<BasicBlock>,
}

impl Module for ResNet18Net {
    fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()> {
        let (conv, bn) = &self.stem;
        conv.init(params, rng)?;
        bn.init(params)?;
        self.blocks.iter().try_for_each(|block| block.init(params, rng))
    }

    fn forward(&self, pass: &Forward, images: &Tensor) -> Result<Tensor> {
        check_input("resnet18_cifar", images, self.input)?;
        let (conv, bn) = &self.stem;
        let mut x = bn.forward(pass, &conv.forward(pass, images)?)?.relu()?;
        for block in &self.blocks {
            x = block.forward(pass, &x)?;
        }
        x.global_avg_pool2d()
    }
}

hamos_api::register_plugin!(
    Model,
    ResNet18Cifar,
    "resnet18_cifar",
    "OpenOOD's ResNet18_32x32 for 32x32 RGB (512 features; PyTorch names)"
);
