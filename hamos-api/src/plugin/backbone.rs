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

    /// The network, built once: its layers hold their parameter names, joined to `prefix`
    /// (`""` gives the PyTorch names). Called after [`validate`](Backbone::validate).
    fn build(&self, prefix: &str) -> Result<Box<dyn Module>>;
}

/// A network built once (a backbone's, from [`Backbone::build`]): its layers hold their
/// resolved parameter names, so a forward pass looks parameters up without building a name.
/// Parameters live in a [`ParamStore`], read through a [`Forward`] pass.
pub trait Module: Debug + Send + Sync {
    /// Registers its parameters and buffers in module order (PyTorch's `state_dict` order),
    /// initialised as PyTorch initialises them, drawing from `rng`.
    fn init(&self, params: &mut ParamStore, rng: &mut dyn RngCore) -> Result<()>;

    /// The output for `input` (a backbone: penultimate features `[n, feature_dim]` of images
    /// `[n, c, h, w]`).
    fn forward(&self, pass: &Forward, input: &Tensor) -> Result<Tensor>;
}
