use std::fmt::Debug;

use rand::RngCore;

use crate::error::Result;
use crate::params::{Forward, ParamStore};
use crate::tensor::Tensor;

/// A feature extractor (Section 3.3: the encoder `h`), config section `model`: images in,
/// penultimate features out. The classification head `fc` and the projection head are added by
/// the network around it, under the same prefix, so that a standalone backbone with prefix `""`
/// has exactly the parameter names of its PyTorch counterpart (OpenOOD's for ResNet-18).
///
/// Required: everything but [`validate`](Backbone::validate).
#[typetag::serde(tag = "kind")]
pub trait Backbone: Debug + Send + Sync {
    /// Checks the config; called before anything is built.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// The input it expects, `[channels, height, width]`.
    fn input_shape(&self) -> [usize; 3];

    /// Width of the penultimate features.
    fn feature_dim(&self) -> usize;

    /// Registers its parameters and buffers under `prefix` in module order (PyTorch's
    /// `state_dict` order), initialised as PyTorch initialises them, drawing from `rng`.
    fn init(&self, params: &mut ParamStore, prefix: &str, rng: &mut dyn RngCore) -> Result<()>;

    /// Penultimate features `[n, feature_dim]` of images `[n, c, h, w]`.
    fn features(&self, pass: &Forward, prefix: &str, images: &Tensor) -> Result<Tensor>;
}
