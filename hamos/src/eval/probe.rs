//! A trained classifier as a differentiable function of raw images, for scorers that perturb
//! their inputs (ODIN), and the image chunks they score.

use std::sync::Arc;

use hamos_api::{Backend, Forward, InputModel, ParamStore, Result, Tensor};
use hamos_nn::Classifier;

use crate::data::{ImageSet, Normalizer};

/// `logits(normalize(images))` in evaluation mode: parameters detached, history kept back to
/// the images.
#[derive(Debug)]
pub struct NetworkProbe {
    net: Classifier,
    params: ParamStore,
    mean: Tensor,
    inv_std: Tensor,
}

impl NetworkProbe {
    /// The classifier `net` with `params`, normalizing inputs as `normalizer`.
    pub fn new(net: Classifier, params: ParamStore, normalizer: &Normalizer) -> Result<Self> {
        let backend = params.backend().clone();
        let c = normalizer.mean().len();
        let inv: Vec<f32> = normalizer.std().iter().map(|s| 1.0 / s).collect();
        Ok(NetworkProbe {
            mean: backend.from_f32(normalizer.mean(), &[1, c, 1, 1])?,
            inv_std: backend.from_f32(&inv, &[1, c, 1, 1])?,
            net,
            params,
        })
    }
}

impl InputModel for NetworkProbe {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let normalized = images.sub(&self.mean)?.mul(&self.inv_std)?;
        self.net.logits(&Forward::eval(&self.params), &normalized)
    }
}

/// Images `start..start + len` of `set` as an `[len, c, h, w]` tensor in pixel units.
pub fn pixel_chunk(backend: &Arc<dyn Backend>, set: &ImageSet, start: usize, len: usize) -> Result<Tensor> {
    let [c, h, w] = set.shape;
    let per = set.image_len();
    let bytes = set.pixels.get(start * per..(start + len) * per).ok_or_else(|| {
        hamos_api::Error::Data(format!(
            "images {start}..{} of `{}`, which has {}",
            start + len,
            set.name,
            set.len()
        ))
    })?;
    let pixels: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
    backend.from_f32(&pixels, &[len, c, h, w])
}
