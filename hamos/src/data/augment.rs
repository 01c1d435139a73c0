//! Normalization of u8 images to f32 and the random crop and flip of the two-view augmentation.

use hamos_api::{AugmentConfig, DataConfig, Error, Result};
use rand::Rng;

/// Maps u8 CHW pixels to `(x / 255 - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalizer {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalizer {
    /// One mean and one positive, finite standard deviation per channel.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::invalid(
                "data.mean",
                format!("mean ({}) and std ({}) need one value per channel", mean.len(), std.len()),
            ));
        }
        if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid("data.std", format!("{bad} must be positive")));
        }
        Ok(Normalizer { mean, std })
    }

    /// The config's `data.mean` and `data.std`.
    pub fn from_config(config: &DataConfig) -> Result<Self> {
        Normalizer::new(config.mean.clone(), config.std.clone())
    }

    /// Number of channels it normalizes.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Errors unless images of `shape` have this normalizer's channel count.
    pub fn check(&self, shape: [usize; 3]) -> Result<()> {
        if shape[0] != self.channels() {
            return Err(Error::Data(format!(
                "normalization has {} channel(s), the images {} (shape {shape:?})",
                self.channels(),
                shape[0]
            )));
        }
        Ok(())
    }

    /// Normalizes one image of `shape` into `out` (both `c * h * w` long).
    pub fn normalize_into(&self, image: &[u8], shape: [usize; 3], out: &mut [f32]) -> Result<()> {
        self.check(shape)?;
        let plane = shape[1] * shape[2];
        if plane == 0 || image.len() != shape[0] * plane || out.len() != image.len() {
            return Err(Error::Data(format!(
                "normalize: {} pixels and {} outputs for an image of shape {shape:?}",
                image.len(),
                out.len()
            )));
        }
        for (c, (src, dst)) in image.chunks_exact(plane).zip(out.chunks_exact_mut(plane)).enumerate() {
            // One multiply-add per pixel: (x / 255 - m) / s = x * (1 / (255 s)) - m / s.
            let (scale, shift) = (1.0 / (255.0 * self.std[c]), self.mean[c] / self.std[c]);
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = f32::from(x) * scale - shift;
            }
        }
        Ok(())
    }

    /// Per-channel means (pixel values in `[0, 1]`).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Per-channel standard deviations.
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// Normalizes one image of `shape`.
    pub fn normalize(&self, image: &[u8], shape: [usize; 3]) -> Result<Vec<f32>> {
        let mut out = vec![0.0; image.len()];
        self.normalize_into(image, shape, &mut out)?;
        Ok(out)
    }
}

/// One draw of the augmentation: the crop's offsets into the padded image and the flip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewParams {
    /// Row offset in `0..=2 * crop_padding`.
    pub dy: usize,
    /// Column offset in `0..=2 * crop_padding`.
    pub dx: usize,
    /// Mirror left-right after the crop.
    pub flip: bool,
}

/// Random crop with zero padding, then an optional left-right flip (probability 1/2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augmenter {
    /// Zeros (raw pixel value 0) added on each side before cropping back to the original size.
    pub crop_padding: usize,
    /// Whether views are flipped with probability 1/2.
    pub horizontal_flip: bool,
}

impl Augmenter {
    /// The config's `data.augment`.
    pub fn from_config(config: &AugmentConfig) -> Self {
        Augmenter { crop_padding: config.crop_padding, horizontal_flip: config.horizontal_flip }
    }

    /// Draws one view's parameters (nothing is drawn for a disabled part).
    pub fn draw(&self, rng: &mut impl Rng) -> ViewParams {
        let span = 2 * self.crop_padding;
        let (dy, dx) =
            if span > 0 { (rng.random_range(0..=span), rng.random_range(0..=span)) } else { (0, 0) };
        let flip = self.horizontal_flip && rng.random_bool(0.5);
        ViewParams { dy, dx, flip }
    }

    /// Applies `params` to one CHW image of `shape`: output pixel (y, x) is input pixel
    /// (y + dy - p, x' + dx - p), or 0 outside the image, with x' = w - 1 - x when flipped.
    pub fn apply(&self, image: &[u8], shape: [usize; 3], params: ViewParams) -> Vec<u8> {
        let [c, h, w] = shape;
        let p = self.crop_padding;
        let mut out = vec![0u8; c * h * w];
        for ch in 0..c {
            let src = &image[ch * h * w..(ch + 1) * h * w];
            let dst = &mut out[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                // Source row in unpadded coordinates; rows in the padding stay 0.
                let Some(sy) = (y + params.dy).checked_sub(p).filter(|&sy| sy < h) else { continue };
                for x in 0..w {
                    let cx = if params.flip { w - 1 - x } else { x };
                    if let Some(sx) = (cx + params.dx).checked_sub(p).filter(|&sx| sx < w) {
                        dst[y * w + x] = src[sy * w + sx];
                    }
                }
            }
        }
        out
    }

    /// One augmented view of a CHW image of `shape`.
    pub fn view(&self, image: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> Vec<u8> {
        let params = self.draw(rng);
        self.apply(image, shape, params)
    }
}
