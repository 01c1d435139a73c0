//! `[data.augment]`: the random view augmentation of the contrastive losses (Algorithm 2,
//! line 3). Each view goes through, in this order: a crop (the padded crop or the resized crop),
//! a horizontal flip, a color jitter and a grayscale conversion, each part optional.

use serde::{Deserialize, Serialize};

use hamos_api::config::finite_in;
use hamos_api::{Error, Result};

/// The view augmentation. The default is today's padded random crop and flip, with the resized
/// crop, the color jitter and the grayscale conversion off; [`AugmentConfig::supcon`] is the
/// SupCon/CIDER recipe the HamOS authors train with.
///
/// Every probability and strength is validated even when its part is off, so a typo never hides
/// until the part is turned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Zeros added on each side before a random crop back to the original size (0: no crop).
    /// Must be 0 when `resized_crop` is on: the resized crop replaces this one.
    pub crop_padding: usize,
    /// Flip left-right with probability 1/2. Off for digit-like data, where a flip changes the
    /// class's look; on for clothing and natural images.
    pub horizontal_flip: bool,
    /// Crop a random region (its area a `crop_scale` fraction of the image's, its width over
    /// height in `crop_ratio`) and resize it back to the image's size with bilinear
    /// interpolation: torchvision's `RandomResizedCrop`.
    pub resized_crop: bool,
    /// `[min, max]` fraction of the image's area the resized crop covers, drawn uniformly;
    /// `0 < min <= max <= 1`.
    pub crop_scale: [f64; 2],
    /// `[min, max]` width-to-height ratio of the resized crop, drawn log-uniformly;
    /// `0 < min <= max`.
    pub crop_ratio: [f64; 2],
    /// Probability that a view's colors are jittered (brightness, contrast, saturation and hue
    /// in a random order; torchvision's `RandomApply([ColorJitter(...)], p)`). 0: never.
    pub color_jitter_probability: f64,
    /// Brightness jitter `b >= 0`: pixels are multiplied by a factor drawn from
    /// `[max(0, 1 - b), 1 + b]`.
    pub brightness: f64,
    /// Contrast jitter `c >= 0`: each image is blended with its mean gray level by a factor drawn
    /// from `[max(0, 1 - c), 1 + c]`.
    pub contrast: f64,
    /// Saturation jitter `s >= 0`: RGB images are blended with their grayscale version by a factor
    /// drawn from `[max(0, 1 - s), 1 + s]` (one-channel images are left alone).
    pub saturation: f64,
    /// Hue jitter `h` in `[0, 0.5]`: the hue of RGB images is shifted by a fraction of a turn drawn
    /// from `[-h, h]` (one-channel images are left alone).
    pub hue: f64,
    /// Probability that an RGB view becomes gray, each channel set to the luma
    /// `0.299 R + 0.587 G + 0.114 B` (torchvision's `RandomGrayscale`; one-channel views are
    /// left alone). 0: never.
    pub grayscale_probability: f64,
}

impl Default for AugmentConfig {
    /// The padded crop (2 pixels) and the flip; the other parts off (their strengths at the
    /// SupCon values, so that turning a part on takes one line).
    fn default() -> Self {
        AugmentConfig {
            crop_padding: 2,
            horizontal_flip: true,
            resized_crop: false,
            crop_scale: [0.2, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            color_jitter_probability: 0.0,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            grayscale_probability: 0.0,
        }
    }
}

impl AugmentConfig {
    /// The SupCon/CIDER recipe of the HamOS authors' released code (Fir-lat/HamOS_OOD,
    /// `openood/preprocessors/hamos_preprocessor.py`, the non-ImageNet branch):
    /// `RandomResizedCrop(size, scale=(0.2, 1.))` (default `ratio=(3/4, 4/3)`, bilinear),
    /// `RandomHorizontalFlip()`, `RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)`,
    /// `RandomGrayscale(p=0.2)`; no padded crop.
    pub fn supcon() -> Self {
        AugmentConfig {
            crop_padding: 0,
            horizontal_flip: true,
            resized_crop: true,
            crop_scale: [0.2, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            color_jitter_probability: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
            grayscale_probability: 0.2,
        }
    }

    /// Checks every field, naming it (`data.augment.crop_scale`, ...).
    pub fn validate(&self) -> Result<()> {
        if self.resized_crop && self.crop_padding > 0 {
            return Err(Error::invalid(
                "data.augment.crop_padding",
                format!(
                    "{} with resized_crop on: set crop_padding = 0 (the resized crop replaces the padded crop)",
                    self.crop_padding
                ),
            ));
        }
        let [scale_min, scale_max] = self.crop_scale;
        let finite = scale_min.is_finite() && scale_max.is_finite();
        if !(finite && 0.0 < scale_min && scale_min <= scale_max && scale_max <= 1.0) {
            return Err(Error::invalid(
                "data.augment.crop_scale",
                format!("[{scale_min}, {scale_max}]: need 0 < min <= max <= 1"),
            ));
        }
        let [ratio_min, ratio_max] = self.crop_ratio;
        let finite = ratio_min.is_finite() && ratio_max.is_finite();
        if !(finite && 0.0 < ratio_min && ratio_min <= ratio_max) {
            return Err(Error::invalid(
                "data.augment.crop_ratio",
                format!("[{ratio_min}, {ratio_max}]: need finite 0 < min <= max"),
            ));
        }
        finite_in("data.augment.color_jitter_probability", self.color_jitter_probability, 0.0, 1.0, true)?;
        for (field, value) in [
            ("data.augment.brightness", self.brightness),
            ("data.augment.contrast", self.contrast),
            ("data.augment.saturation", self.saturation),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::invalid(field, format!("{value}: need a finite value >= 0")));
            }
        }
        // A shift of more than half a turn would alias a shift the other way.
        finite_in("data.augment.hue", self.hue, 0.0, 0.5, true)?;
        finite_in("data.augment.grayscale_probability", self.grayscale_probability, 0.0, 1.0, true)
    }
}
