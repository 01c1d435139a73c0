//! The color part of the view augmentation: torchvision's `ColorJitter` and `RandomGrayscale`
//! on CHW f32 images with values in `[0, 1]`.
//!
//! The formulas are those of torchvision's tensor functions (`adjust_brightness`,
//! `adjust_contrast`, `adjust_saturation`, `adjust_hue`, `rgb_to_grayscale`) on float images,
//! with the luma weights `0.299, 0.587, 0.114` of PIL's `convert("L")` (torchvision's tensor
//! version uses 0.2989 for red). The authors' pipeline jitters PIL images, which rounds to 8
//! bits after each step and quantizes the hue shift to 1/255 of a turn; here the view is
//! rounded to 8 bits once, at the end.
//!
//! Only three-channel images have a saturation, a hue and a grayscale version: on images with
//! another channel count those steps change nothing (torchvision's behaviour on one channel),
//! and the contrast uses the mean over all channels.

use rand::seq::SliceRandom;
use rand::Rng;

/// Luma weights of R, G and B (ITU-R 601-2, as PIL's `convert("L")`).
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// torchvision's `RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    /// Probability that a view is jittered at all.
    pub probability: f64,
    /// Brightness factor drawn from `[max(0, 1 - brightness), 1 + brightness]` (0: left out).
    pub brightness: f64,
    /// Contrast factor drawn from `[max(0, 1 - contrast), 1 + contrast]` (0: left out).
    pub contrast: f64,
    /// Saturation factor drawn from `[max(0, 1 - saturation), 1 + saturation]` (0: left out).
    pub saturation: f64,
    /// Hue shift, in turns, drawn from `[-hue, hue]` (0: left out).
    pub hue: f64,
}

/// One step of a jitter with its drawn factor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColorOp {
    /// Multiply every value by the factor.
    Brightness(f32),
    /// Blend with the image's mean gray level: `f x + (1 - f) mean`.
    Contrast(f32),
    /// Blend with the per-pixel gray level: `f x + (1 - f) gray`.
    Saturation(f32),
    /// Shift the hue by this fraction of a turn.
    Hue(f32),
}

/// One drawn jitter: its steps in the order they apply (`None`: a step left out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JitterParams {
    /// The steps, in a random order as torchvision's `ColorJitter.get_params` permutes them.
    pub ops: [Option<ColorOp>; 4],
}

/// `lo + (hi - lo) u`, `u` uniform in `[0, 1)`; unlike `random_range` it accepts `lo == hi`.
pub(crate) fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// True with probability `p`, as torchvision's `torch.rand(1) < p`; draws nothing when `p <= 0`
/// so that a disabled part leaves the random stream alone.
pub(crate) fn chance(rng: &mut impl Rng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

impl ColorJitter {
    /// Draws whether the jitter applies (`None`: it does not), then as torchvision does the
    /// order of the four steps and the factor of each step whose strength is not 0.
    pub fn draw(&self, rng: &mut impl Rng) -> Option<JitterParams> {
        if !chance(rng, self.probability) {
            return None;
        }
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let mut factor = |strength: f64| {
            (strength > 0.0).then(|| uniform(rng, (1.0 - strength).max(0.0), 1.0 + strength) as f32)
        };
        let brightness = factor(self.brightness).map(ColorOp::Brightness);
        let contrast = factor(self.contrast).map(ColorOp::Contrast);
        let saturation = factor(self.saturation).map(ColorOp::Saturation);
        let hue = (self.hue > 0.0).then(|| ColorOp::Hue(uniform(rng, -self.hue, self.hue) as f32));
        let steps = [brightness, contrast, saturation, hue];
        Some(JitterParams { ops: order.map(|i| steps[i]) })
    }
}

impl JitterParams {
    /// Applies the steps in order to a CHW image of `shape` with values in `[0, 1]`.
    pub fn apply(&self, image: &mut [f32], shape: [usize; 3]) {
        for op in self.ops.iter().flatten() {
            match *op {
                ColorOp::Brightness(f) => adjust_brightness(image, f),
                ColorOp::Contrast(f) => adjust_contrast(image, shape, f),
                ColorOp::Saturation(f) => adjust_saturation(image, shape, f),
                ColorOp::Hue(shift) => adjust_hue(image, shape, shift),
            }
        }
    }
}

/// The three planes of an RGB image, `None` for any other channel count.
fn rgb_planes(image: &mut [f32], shape: [usize; 3]) -> Option<(&mut [f32], &mut [f32], &mut [f32])> {
    let plane = shape[1] * shape[2];
    if shape[0] != 3 || image.len() != 3 * plane {
        return None;
    }
    let (r, rest) = image.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    Some((r, g, b))
}

/// `x f`, clamped to `[0, 1]` (torchvision's `adjust_brightness`).
pub fn adjust_brightness(image: &mut [f32], factor: f32) {
    for x in image {
        *x = (*x * factor).clamp(0.0, 1.0);
    }
}

/// Blends with the mean of the grayscale image (of all values when not RGB), clamped to
/// `[0, 1]` (torchvision's `adjust_contrast`).
pub fn adjust_contrast(image: &mut [f32], shape: [usize; 3], factor: f32) {
    if image.is_empty() {
        return;
    }
    let mean = match rgb_planes(image, shape) {
        Some((r, g, b)) => {
            // Summed in f64: a large image's f32 sum would lose the low bits.
            let sum: f64 = r.iter().zip(&*g).zip(&*b).map(|((&r, &g), &b)| f64::from(luma(r, g, b))).sum();
            sum / r.len() as f64
        }
        None => image.iter().map(|&x| f64::from(x)).sum::<f64>() / image.len() as f64,
    } as f32;
    for x in image {
        *x = (factor * *x + (1.0 - factor) * mean).clamp(0.0, 1.0);
    }
}

/// Blends each RGB pixel with its gray level, clamped to `[0, 1]` (torchvision's
/// `adjust_saturation`); other channel counts are left alone.
pub fn adjust_saturation(image: &mut [f32], shape: [usize; 3], factor: f32) {
    let Some((r, g, b)) = rgb_planes(image, shape) else { return };
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let gray = (1.0 - factor) * luma(*r, *g, *b);
        *r = (factor * *r + gray).clamp(0.0, 1.0);
        *g = (factor * *g + gray).clamp(0.0, 1.0);
        *b = (factor * *b + gray).clamp(0.0, 1.0);
    }
}

/// Shifts the hue of each RGB pixel by `shift` turns through HSV (torchvision's `adjust_hue`,
/// with its `_rgb2hsv` and `_hsv2rgb`); other channel counts are left alone.
pub fn adjust_hue(image: &mut [f32], shape: [usize; 3], shift: f32) {
    let Some((r, g, b)) = rgb_planes(image, shape) else { return };
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let [h, s, v] = rgb_to_hsv([*r, *g, *b]);
        [*r, *g, *b] = hsv_to_rgb([(h + shift).rem_euclid(1.0), s, v]);
    }
}

/// Sets every channel of an RGB image to the luma (torchvision's `rgb_to_grayscale` with three
/// output channels); other channel counts are left alone.
pub fn to_grayscale(image: &mut [f32], shape: [usize; 3]) {
    let Some((r, g, b)) = rgb_planes(image, shape) else { return };
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let gray = luma(*r, *g, *b);
        (*r, *g, *b) = (gray, gray, gray);
    }
}

/// `0.299 r + 0.587 g + 0.114 b`.
pub fn luma(r: f32, g: f32, b: f32) -> f32 {
    LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
}

/// `[h, s, v]` in `[0, 1]` of an RGB pixel in `[0, 1]`, as torchvision's `_rgb2hsv`.
pub fn rgb_to_hsv([r, g, b]: [f32; 3]) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let range = max - min;
    // Gray pixels (max == min) get hue and saturation 0 instead of a 0/0.
    let gray = max == min;
    let s = range / if gray { 1.0 } else { max };
    let divisor = if gray { 1.0 } else { range };
    let (rc, gc, bc) = ((max - r) / divisor, (max - g) / divisor, (max - b) / divisor);
    let h = if max == r {
        bc - gc
    } else if max == g {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    [(h / 6.0 + 1.0) % 1.0, s, max]
}

/// The RGB pixel of `[h, s, v]`, as torchvision's `_hsv2rgb`.
pub fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let sector = (h * 6.0).floor();
    let f = h * 6.0 - sector;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match (sector as i32).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}
