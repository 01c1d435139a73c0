//! Normalization of u8 images to f32 and the view augmentation of the contrastive losses:
//! [`Augmenter`] is the padded random crop and flip, [`ViewAugmenter`] the whole `[data.augment]`
//! pipeline (padded or resized crop, flip, color jitter, grayscale; the color steps in [`color`]).

pub mod color;

use hamos_api::{Error, Result};
use rand::Rng;

use crate::config::{AugmentConfig, DataConfig};
use color::{chance, uniform};
pub use color::{ColorJitter, ColorOp, JitterParams};

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

/// A crop region, in pixels of the image it is cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows (at least 1 for a non-empty image).
    pub height: usize,
    /// Columns (at least 1 for a non-empty image).
    pub width: usize,
}

/// torchvision's `RandomResizedCrop` region sampling (`get_params`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResizedCrop {
    /// `[min, max]` fraction of the image's area, drawn uniformly.
    pub scale: [f64; 2],
    /// `[min, max]` width-to-height ratio, drawn log-uniformly.
    pub ratio: [f64; 2],
}

impl ResizedCrop {
    /// Draws a region of a `height x width` image: up to 10 tries of an area `height * width *
    /// U(scale)` and a ratio `exp(U(ln ratio))`, rounded (half to even, as Python's `round`) to
    /// `width = sqrt(area * ratio)`, `height = sqrt(area / ratio)`; the first that fits is placed
    /// uniformly. When none fits, the centred largest crop with the ratio clamped to `ratio`.
    pub fn draw(&self, height: usize, width: usize, rng: &mut impl Rng) -> CropBox {
        if height == 0 || width == 0 {
            return CropBox { top: 0, left: 0, height, width };
        }
        let (h, w) = (height as f64, width as f64);
        let (log_min, log_max) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let area = h * w * uniform(rng, self.scale[0], self.scale[1]);
            let ratio = uniform(rng, log_min, log_max).exp();
            let crop_w = (area * ratio).sqrt().round_ties_even();
            let crop_h = (area / ratio).sqrt().round_ties_even();
            // Written so that a NaN (from a ratio <= 0 set by hand) fails the test.
            if crop_w > 0.0 && crop_w <= w && crop_h > 0.0 && crop_h <= h {
                let (crop_h, crop_w) = (crop_h as usize, crop_w as usize);
                let top = rng.random_range(0..=height - crop_h);
                let left = rng.random_range(0..=width - crop_w);
                return CropBox { top, left, height: crop_h, width: crop_w };
            }
        }
        let in_ratio = w / h;
        let (crop_h, crop_w) = if in_ratio < self.ratio[0] {
            ((w / self.ratio[0]).round_ties_even(), w)
        } else if in_ratio > self.ratio[1] {
            (h, (h * self.ratio[1]).round_ties_even())
        } else {
            (h, w)
        };
        // torchvision would cut an empty crop from a sliver image; keep at least one pixel.
        let crop_h = (crop_h as usize).clamp(1, height);
        let crop_w = (crop_w as usize).clamp(1, width);
        CropBox { top: (height - crop_h) / 2, left: (width - crop_w) / 2, height: crop_h, width: crop_w }
    }
}

/// Source taps of one output coordinate of a bilinear resize: the two input indices and the
/// weight of the second.
fn bilinear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            // align_corners=False: pixel centres line up, and the edge pixels repeat outwards.
            let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, (src - i0 as f32).clamp(0.0, 1.0))
        })
        .collect()
}

/// Cuts `crop` out of a CHW image of `shape` and resizes it to the image's `h x w` with
/// bilinear interpolation as torch's `interpolate(mode="bilinear", align_corners=False)`;
/// values stay in the 0-255 scale, unrounded. No antialiasing: a crop is never larger than the
/// image, so every axis is upscaled or kept. Panics if `crop` does not lie inside the image.
pub fn crop_resize_bilinear(image: &[u8], shape: [usize; 3], crop: CropBox) -> Vec<f32> {
    let [c, h, w] = shape;
    let mut out = vec![0.0; c * h * w];
    if crop.height == 0 || crop.width == 0 {
        return out;
    }
    assert!(
        crop.top + crop.height <= h && crop.left + crop.width <= w,
        "crop {crop:?} outside an image of shape {shape:?}"
    );
    let (rows, cols) = (bilinear_taps(crop.height, h), bilinear_taps(crop.width, w));
    for ch in 0..c {
        let src = &image[ch * h * w..(ch + 1) * h * w];
        let dst = &mut out[ch * h * w..(ch + 1) * h * w];
        let at = |y: usize, x: usize| f32::from(src[(crop.top + y) * w + crop.left + x]);
        for (y, &(y0, y1, ly)) in rows.iter().enumerate() {
            for (x, &(x0, x1, lx)) in cols.iter().enumerate() {
                let top = (1.0 - lx) * at(y0, x0) + lx * at(y0, x1);
                let bottom = (1.0 - lx) * at(y1, x0) + lx * at(y1, x1);
                dst[y * w + x] = (1.0 - ly) * top + ly * bottom;
            }
        }
    }
    out
}

/// 0-255 values to u8, rounded half to even as torch rounds before casting.
fn quantize(values: &[f32]) -> Vec<u8> {
    values.iter().map(|v| v.round_ties_even().clamp(0.0, 255.0) as u8).collect()
}

/// One draw of the whole view augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewDraw {
    /// The padded crop's offsets and the flip (which also applies after a resized crop).
    pub crop_flip: ViewParams,
    /// The resized crop's region, when it is on.
    pub resized_crop: Option<CropBox>,
    /// The color jitter, when it applies to this view.
    pub jitter: Option<JitterParams>,
    /// Whether this view becomes gray.
    pub grayscale: bool,
}

/// The `[data.augment]` pipeline, per view: the padded crop, the resized crop, the flip, the
/// color jitter, the grayscale conversion. The config's validation keeps the two crops from
/// being on together; set by hand, the resized crop is cut from the padded crop's result. With
/// only the padded crop and the flip on it draws and returns exactly what [`Augmenter`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewAugmenter {
    /// The padded crop and the flip.
    pub crop_flip: Augmenter,
    /// The resized crop (`None`: off).
    pub resized_crop: Option<ResizedCrop>,
    /// The color jitter (`None`: off).
    pub color_jitter: Option<ColorJitter>,
    /// Probability of the grayscale conversion (0: off).
    pub grayscale_probability: f64,
}

impl From<Augmenter> for ViewAugmenter {
    fn from(crop_flip: Augmenter) -> Self {
        ViewAugmenter { crop_flip, resized_crop: None, color_jitter: None, grayscale_probability: 0.0 }
    }
}

impl ViewAugmenter {
    /// The config's `data.augment` (assumed validated).
    pub fn from_config(config: &AugmentConfig) -> Self {
        let jitter = ColorJitter {
            probability: config.color_jitter_probability,
            brightness: config.brightness,
            contrast: config.contrast,
            saturation: config.saturation,
            hue: config.hue,
        };
        ViewAugmenter {
            crop_flip: Augmenter::from_config(config),
            resized_crop: config
                .resized_crop
                .then_some(ResizedCrop { scale: config.crop_scale, ratio: config.crop_ratio }),
            color_jitter: (config.color_jitter_probability > 0.0).then_some(jitter),
            grayscale_probability: config.grayscale_probability,
        }
    }

    /// Draws one view of an image of `shape`, in a fixed order: the padded crop and the flip
    /// (as [`Augmenter::draw`]), the resized crop, the jitter, the grayscale conversion; nothing
    /// is drawn for a part that is off.
    pub fn draw(&self, shape: [usize; 3], rng: &mut impl Rng) -> ViewDraw {
        let crop_flip = self.crop_flip.draw(rng);
        let resized_crop = self.resized_crop.map(|crop| crop.draw(shape[1], shape[2], rng));
        let jitter = self.color_jitter.and_then(|jitter| jitter.draw(rng));
        let grayscale = chance(rng, self.grayscale_probability);
        ViewDraw { crop_flip, resized_crop, jitter, grayscale }
    }

    /// Applies `draw` to a CHW image of `shape`. The geometric steps give 0-255 values (exact
    /// pixels without a resized crop); the color steps work on `[0, 1]`; the view is rounded to
    /// u8 once, at the end.
    pub fn apply(&self, image: &[u8], shape: [usize; 3], draw: &ViewDraw) -> Vec<u8> {
        let [c, h, w] = shape;
        let color = draw.jitter.is_some() || draw.grayscale;
        let mut values = match draw.resized_crop {
            None => {
                let view = self.crop_flip.apply(image, shape, draw.crop_flip);
                if !color {
                    return view;
                }
                view.iter().map(|&x| f32::from(x)).collect()
            }
            Some(crop) => {
                let mut values = if self.crop_flip.crop_padding > 0 {
                    let padded =
                        self.crop_flip.apply(image, shape, ViewParams { flip: false, ..draw.crop_flip });
                    crop_resize_bilinear(&padded, shape, crop)
                } else {
                    crop_resize_bilinear(image, shape, crop)
                };
                if draw.crop_flip.flip {
                    values.chunks_exact_mut(w.max(1)).for_each(<[f32]>::reverse);
                }
                values
            }
        };
        debug_assert_eq!(values.len(), c * h * w);
        if !color {
            return quantize(&values);
        }
        values.iter_mut().for_each(|v| *v /= 255.0);
        if let Some(jitter) = draw.jitter {
            jitter.apply(&mut values, shape);
        }
        if draw.grayscale {
            color::to_grayscale(&mut values, shape);
        }
        values.iter_mut().for_each(|v| *v *= 255.0);
        quantize(&values)
    }

    /// One augmented view of a CHW image of `shape`.
    pub fn view(&self, image: &[u8], shape: [usize; 3], rng: &mut impl Rng) -> Vec<u8> {
        let draw = self.draw(shape, rng);
        self.apply(image, shape, &draw)
    }
}
