//! The `[data.augment]` pipeline against independent f64 references of torchvision's formulas
//! (RandomResizedCrop, bilinear resize with align_corners=False, ColorJitter, RandomGrayscale)
//! on random images (the config's fields are in `augment_config.rs`).
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use hamos::data::augment::color::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, to_grayscale, ColorJitter, ColorOp,
};
use hamos::data::augment::{crop_resize_bilinear, CropBox, ResizedCrop, ViewAugmenter, ViewDraw};
use hamos::data::Augmenter;
use hamos::AugmentConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random_image(shape: [usize; 3], seed: u64) -> Vec<u8> {
    let mut rng = rng(seed);
    (0..shape.iter().product::<usize>()).map(|_| rng.random()).collect()
}

/// Values in `[0, 1]`, including the end points, so that clamps and gray pixels are exercised.
fn random_unit_image(shape: [usize; 3], seed: u64) -> Vec<f32> {
    let mut rng = rng(seed);
    (0..shape.iter().product::<usize>())
        .map(|_| match rng.random_range(0..10) {
            0 => 0.0,
            1 => 1.0,
            _ => rng.random(),
        })
        .collect()
}

fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!((f64::from(a) - e).abs() <= tolerance, "{what}: value {i} is {a}, the reference {e}");
    }
}

// ---- f64 references, written from torchvision's definitions, not from the code under test ----

const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

fn gray64(image: &[f64], plane: usize, p: usize) -> f64 {
    LUMA[0] * image[p] + LUMA[1] * image[plane + p] + LUMA[2] * image[2 * plane + p]
}

fn to64(image: &[f32]) -> Vec<f64> {
    image.iter().map(|&x| f64::from(x)).collect()
}

/// `torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)`,
/// one output pixel at a time.
fn bilinear_reference(image: &[u8], shape: [usize; 3], crop: CropBox) -> Vec<f64> {
    let [c, h, w] = shape;
    let source = |o: usize, input: usize, output: usize| {
        let x = ((o as f64 + 0.5) * input as f64 / output as f64 - 0.5).max(0.0);
        let i0 = (x.floor() as usize).min(input - 1);
        (i0, (i0 + 1).min(input - 1), (x - i0 as f64).min(1.0))
    };
    let mut out = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        let px = |y: usize, x: usize| f64::from(image[ch * h * w + (crop.top + y) * w + crop.left + x]);
        for y in 0..h {
            let (y0, y1, wy) = source(y, crop.height, h);
            for x in 0..w {
                let (x0, x1, wx) = source(x, crop.width, w);
                out.push(
                    (1.0 - wy) * (1.0 - wx) * px(y0, x0)
                        + (1.0 - wy) * wx * px(y0, x1)
                        + wy * (1.0 - wx) * px(y1, x0)
                        + wy * wx * px(y1, x1),
                );
            }
        }
    }
    out
}

fn brightness_reference(image: &[f64], f: f64) -> Vec<f64> {
    image.iter().map(|x| (f * x).clamp(0.0, 1.0)).collect()
}

fn contrast_reference(image: &[f64], shape: [usize; 3], f: f64) -> Vec<f64> {
    let plane = shape[1] * shape[2];
    let mean = if shape[0] == 3 {
        (0..plane).map(|p| gray64(image, plane, p)).sum::<f64>() / plane as f64
    } else {
        image.iter().sum::<f64>() / image.len() as f64
    };
    image.iter().map(|x| (f * x + (1.0 - f) * mean).clamp(0.0, 1.0)).collect()
}

fn saturation_reference(image: &[f64], shape: [usize; 3], f: f64) -> Vec<f64> {
    let plane = shape[1] * shape[2];
    (0..image.len())
        .map(|i| (f * image[i] + (1.0 - f) * gray64(image, plane, i % plane)).clamp(0.0, 1.0))
        .collect()
}

fn grayscale_reference(image: &[f64], shape: [usize; 3]) -> Vec<f64> {
    let plane = shape[1] * shape[2];
    (0..image.len()).map(|i| gray64(image, plane, i % plane)).collect()
}

/// Python's `colorsys.rgb_to_hsv`.
fn rgb_to_hsv64(r: f64, g: f64, b: f64) -> (f64, f64, f64) {
    let (maxc, minc) = (r.max(g).max(b), r.min(g).min(b));
    if maxc == minc {
        return (0.0, 0.0, maxc);
    }
    let s = (maxc - minc) / maxc;
    let (rc, gc, bc) = ((maxc - r) / (maxc - minc), (maxc - g) / (maxc - minc), (maxc - b) / (maxc - minc));
    let h = if r == maxc {
        bc - gc
    } else if g == maxc {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    ((h / 6.0).rem_euclid(1.0), s, maxc)
}

/// Python's `colorsys.hsv_to_rgb`.
fn hsv_to_rgb64(h: f64, s: f64, v: f64) -> (f64, f64, f64) {
    if s == 0.0 {
        return (v, v, v);
    }
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match (i as i64).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

fn hue_reference(image: &[f64], shape: [usize; 3], shift: f64) -> Vec<f64> {
    let plane = shape[1] * shape[2];
    let mut out = image.to_vec();
    for p in 0..plane {
        let (h, s, v) = rgb_to_hsv64(image[p], image[plane + p], image[2 * plane + p]);
        let (r, g, b) = hsv_to_rgb64((h + shift).rem_euclid(1.0), s, v);
        (out[p], out[plane + p], out[2 * plane + p]) = (r, g, b);
    }
    out
}

// ---- the resized crop ----

/// Whether some area in `scale * h * w` and ratio in `ratio` round to this crop's size.
fn explained_by(crop: CropBox, [h, w]: [usize; 2], scale: [f64; 2], ratio: [f64; 2]) -> bool {
    let (ch, cw) = (crop.height as f64, crop.width as f64);
    let area = [(cw - 0.5) * (ch - 0.5), (cw + 0.5) * (ch + 0.5)];
    let aspect = [(cw - 0.5) / (ch + 0.5), (cw + 0.5) / (ch - 0.5)];
    let full = (h * w) as f64;
    area[0] <= scale[1] * full && scale[0] * full <= area[1] && aspect[0] <= ratio[1] && ratio[0] <= aspect[1]
}

#[test]
fn resized_crop_regions_stay_in_bounds_and_cover_the_configured_ranges() {
    let sampler = ResizedCrop { scale: [0.2, 1.0], ratio: [0.75, 4.0 / 3.0] };
    for (h, w) in [(32, 32), (24, 40), (28, 28)] {
        let mut rng = rng(h as u64 * 100 + w as u64);
        let (mut areas, mut ratios) = (Vec::new(), Vec::new());
        let (mut touches_top, mut touches_bottom, mut touches_left, mut touches_right) = (0, 0, 0, 0);
        for _ in 0..20_000 {
            let crop = sampler.draw(h, w, &mut rng);
            assert!(crop.height >= 1 && crop.width >= 1, "{crop:?}");
            assert!(crop.top + crop.height <= h && crop.left + crop.width <= w, "{crop:?} in {h}x{w}");
            assert!(explained_by(crop, [h, w], sampler.scale, sampler.ratio), "{crop:?} in {h}x{w}");
            areas.push((crop.height * crop.width) as f64 / (h * w) as f64);
            ratios.push(crop.width as f64 / crop.height as f64);
            touches_top += usize::from(crop.top == 0);
            touches_bottom += usize::from(crop.top + crop.height == h);
            touches_left += usize::from(crop.left == 0);
            touches_right += usize::from(crop.left + crop.width == w);
        }
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // The draws reach both ends of each range (up to the rounding to whole pixels); on the
        // 24x40 image the largest crop of ratio 4/3 at most is 24x32, 0.8 of the area.
        let largest = if h == w { 0.95 } else { 0.79 };
        assert!(min(&areas) < 0.22 && max(&areas) > largest, "areas {} to {}", min(&areas), max(&areas));
        assert!(min(&ratios) < 0.8 && max(&ratios) > 1.25, "ratios {} to {}", min(&ratios), max(&ratios));
        if h == w {
            // On a square image crops under half the area always fit, so their area fractions
            // are U(0.2, 0.5) (mean 0.35) up to the rounding; a ratio and its inverse fit
            // alike, so the log-ratios average 0.
            let small: Vec<f64> = areas.iter().copied().filter(|&a| a < 0.5).collect();
            let small_mean = small.iter().sum::<f64>() / small.len() as f64;
            assert!((small_mean - 0.35).abs() < 0.01, "mean small area {small_mean}");
            let log_mean = ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64;
            assert!(log_mean.abs() < 0.01, "mean log-ratio {log_mean}");
        }
        assert!([touches_top, touches_bottom, touches_left, touches_right].iter().all(|&n| n > 1000));
    }
}

#[test]
fn resized_crop_places_a_fixed_size_uniformly_and_falls_back_to_the_centre() {
    // Area 256 at ratio 1: always 16x16, top-left uniform in 0..=16.
    let fixed = ResizedCrop { scale: [0.25, 0.25], ratio: [1.0, 1.0] };
    let mut rng = rng(3);
    let mut counts = [[0usize; 17]; 2];
    for _ in 0..17_000 {
        let crop = fixed.draw(32, 32, &mut rng);
        assert_eq!((crop.height, crop.width), (16, 16));
        counts[0][crop.top] += 1;
        counts[1][crop.left] += 1;
    }
    assert!(counts.iter().flatten().all(|&n| (800..1200).contains(&n)), "{counts:?}");
    // sqrt(1024 * 2) = 45 > 32 every time: torchvision's fallback keeps the full width and
    // cuts the height to round(32 / 2) = 16, centred; the mirror case likewise.
    let wide = ResizedCrop { scale: [1.0, 1.0], ratio: [2.0, 2.0] };
    assert_eq!(wide.draw(32, 32, &mut rng), CropBox { top: 8, left: 0, height: 16, width: 32 });
    let tall = ResizedCrop { scale: [1.0, 1.0], ratio: [0.5, 0.5] };
    assert_eq!(tall.draw(32, 32, &mut rng), CropBox { top: 0, left: 8, height: 32, width: 16 });
    // On a 20x30 image a 24x24 crop never fits: the fallback clamps the image's ratio 1.5 to
    // the range, 1 (20x20, centred) or 1.6 (full width, height round(30 / 1.6) = 19).
    let square = ResizedCrop { scale: [1.0, 1.0], ratio: [1.0, 1.0] };
    assert_eq!(square.draw(20, 30, &mut rng), CropBox { top: 0, left: 5, height: 20, width: 20 });
    let wider = ResizedCrop { scale: [1.0, 1.0], ratio: [1.6, 1.6] };
    assert_eq!(wider.draw(20, 30, &mut rng), CropBox { top: 0, left: 0, height: 19, width: 30 });
}

#[test]
fn bilinear_resize_matches_the_align_corners_false_formula() {
    // By hand: 2x2 [[0, 100], [200, 40]] to 4x4. Output coordinate o samples input
    // (o + 0.5) / 2 - 0.5, clamped at 0: -0.25 -> 0, 0.25, 0.75, 1.25 -> the last pixel.
    let mut image = vec![9u8; 16];
    image[..2].copy_from_slice(&[0, 100]);
    image[4..6].copy_from_slice(&[200, 40]);
    let crop = CropBox { top: 0, left: 0, height: 2, width: 2 };
    let by_hand = [
        [0.0, 25.0, 75.0, 100.0],
        [50.0, 58.75, 76.25, 85.0],
        [150.0, 126.25, 78.75, 55.0],
        [200.0, 160.0, 80.0, 40.0],
    ];
    let resized = crop_resize_bilinear(&image, [1, 4, 4], crop);
    assert_close(&resized, &by_hand.concat(), 1e-4, "2x2 to 4x4");

    for (k, shape) in [[3, 32, 32], [1, 28, 28], [3, 24, 40], [2, 5, 7]].into_iter().enumerate() {
        let image = random_image(shape, k as u64);
        let mut rng = rng(10 + k as u64);
        for _ in 0..50 {
            let (height, width) = (rng.random_range(1..=shape[1]), rng.random_range(1..=shape[2]));
            let crop = CropBox {
                top: rng.random_range(0..=shape[1] - height),
                left: rng.random_range(0..=shape[2] - width),
                height,
                width,
            };
            let resized = crop_resize_bilinear(&image, shape, crop);
            assert_close(&resized, &bilinear_reference(&image, shape, crop), 1e-3, &format!("{crop:?}"));
        }
        // The full image is reproduced exactly.
        let full = CropBox { top: 0, left: 0, height: shape[1], width: shape[2] };
        let same: Vec<u8> = crop_resize_bilinear(&image, shape, full).iter().map(|&v| v as u8).collect();
        assert_eq!(same, image, "{shape:?}");
    }
}

#[test]
fn identity_resized_crop_reproduces_the_image() {
    let config = AugmentConfig {
        crop_padding: 0,
        horizontal_flip: false,
        resized_crop: true,
        crop_scale: [1.0, 1.0],
        crop_ratio: [1.0, 1.0],
        ..AugmentConfig::default()
    };
    config.validate().unwrap();
    let augmenter = ViewAugmenter::from_config(&config);
    let shape = [3, 32, 32];
    let image = random_image(shape, 1);
    let mut rng = rng(2);
    for _ in 0..5 {
        assert_eq!(augmenter.view(&image, shape, &mut rng), image);
    }
}

// ---- the color steps ----

#[test]
fn brightness_contrast_saturation_and_grayscale_match_torchvision() {
    let shape = [3, 9, 11];
    for (k, factor) in [0.0f32, 0.37, 0.6, 1.0, 1.4, 2.5].into_iter().enumerate() {
        let image = random_unit_image(shape, k as u64);
        let f = f64::from(factor);
        let mut out = image.clone();
        adjust_brightness(&mut out, factor);
        assert_close(&out, &brightness_reference(&to64(&image), f), 1e-6, "brightness");
        let mut out = image.clone();
        adjust_contrast(&mut out, shape, factor);
        assert_close(&out, &contrast_reference(&to64(&image), shape, f), 1e-5, "contrast");
        let mut out = image.clone();
        adjust_saturation(&mut out, shape, factor);
        assert_close(&out, &saturation_reference(&to64(&image), shape, f), 1e-5, "saturation");
    }
    let image = random_unit_image(shape, 7);
    let mut gray = image.clone();
    to_grayscale(&mut gray, shape);
    assert_close(&gray, &grayscale_reference(&to64(&image), shape), 1e-6, "grayscale");
    // Saturation 0 is the grayscale image, saturation 1 the image.
    let mut desaturated = image.clone();
    adjust_saturation(&mut desaturated, shape, 0.0);
    assert_close(&desaturated, &to64(&gray), 1e-6, "saturation 0");
    let mut same = image.clone();
    adjust_saturation(&mut same, shape, 1.0);
    assert_close(&same, &to64(&image), 1e-6, "saturation 1");
}

#[test]
fn hue_shift_matches_torchvision_and_round_trips_at_zero() {
    let shape = [3, 16, 16];
    for (k, shift) in [-0.5f32, -0.1, -0.03, 0.0, 0.02, 0.1, 0.25, 0.5].into_iter().enumerate() {
        let image = random_unit_image(shape, 20 + k as u64);
        let mut out = image.clone();
        adjust_hue(&mut out, shape, shift);
        assert_close(
            &out,
            &hue_reference(&to64(&image), shape, f64::from(shift)),
            1e-5,
            &format!("hue {shift}"),
        );
    }
    // rgb -> hsv -> rgb of 8-bit pixels gives the pixels back.
    let pixels = random_image(shape, 30);
    let mut values: Vec<f32> = pixels.iter().map(|&x| f32::from(x) / 255.0).collect();
    adjust_hue(&mut values, shape, 0.0);
    for (&x, &v) in pixels.iter().zip(&values) {
        assert!((f32::from(x) - (v * 255.0).round()).abs() <= 1.0, "{x} came back as {}", v * 255.0);
    }
    // A half-turn twice is the identity; red turns cyan.
    let mut red = vec![1.0, 0.0, 0.0];
    adjust_hue(&mut red, [3, 1, 1], 0.5);
    assert_close(&red, &[0.0, 1.0, 1.0], 1e-6, "red + 0.5");
}

#[test]
fn one_channel_images_skip_saturation_hue_and_grayscale_as_torchvision_does() {
    let shape = [1, 12, 12];
    let image = random_unit_image(shape, 40);
    for step in [
        &(|v: &mut Vec<f32>| adjust_saturation(v, shape, 0.2)) as &dyn Fn(&mut Vec<f32>),
        &|v| adjust_hue(v, shape, 0.3),
        &|v| to_grayscale(v, shape),
    ] {
        let mut out = image.clone();
        step(&mut out);
        assert_eq!(out, image);
    }
    // Contrast blends with the channel's mean, brightness scales.
    let mut out = image.clone();
    adjust_contrast(&mut out, shape, 0.5);
    assert_close(&out, &contrast_reference(&to64(&image), shape, 0.5), 1e-5, "one-channel contrast");
    let mut out = image.clone();
    adjust_brightness(&mut out, 1.3);
    assert_close(&out, &brightness_reference(&to64(&image), 1.3), 1e-6, "one-channel brightness");
    // The whole recipe on a gray image still works, and its grayscale draw changes nothing.
    let pixels = random_image([1, 28, 28], 41);
    let augmenter = ViewAugmenter::from_config(&AugmentConfig::supcon());
    let mut rng = rng(42);
    let draw = ViewDraw { grayscale: true, jitter: None, ..augmenter.draw([1, 28, 28], &mut rng) };
    let without = ViewDraw { grayscale: false, ..draw };
    assert_eq!(augmenter.apply(&pixels, [1, 28, 28], &draw), augmenter.apply(&pixels, [1, 28, 28], &without));
}

#[test]
fn jitter_draws_follow_torchvision_get_params() {
    let jitter = ColorJitter { probability: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1 };
    let mut rng = rng(50);
    let mut applied = 0;
    let mut orders = std::collections::HashSet::new();
    for _ in 0..10_000 {
        let Some(params) = jitter.draw(&mut rng) else { continue };
        applied += 1;
        let order = params.ops.map(|op| {
            let (step, factor, range) = match op.unwrap() {
                ColorOp::Brightness(f) => (0, f, 0.6..=1.4),
                ColorOp::Contrast(f) => (1, f, 0.6..=1.4),
                ColorOp::Saturation(f) => (2, f, 0.6..=1.4),
                ColorOp::Hue(h) => (3, h, -0.1..=0.1),
            };
            assert!(range.contains(&factor), "{op:?} outside {range:?}");
            step
        });
        let mut sorted = order;
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3], "each step once");
        orders.insert(order);
    }
    assert!((7800..8200).contains(&applied), "applied {applied} of 10000 at p = 0.8");
    assert_eq!(orders.len(), 24, "every order of the four steps");
    // A strength of 0 leaves its step out; probability 0 never applies; 1 always does.
    let only_hue =
        ColorJitter { probability: 1.0, brightness: 0.0, contrast: 0.0, saturation: 0.0, hue: 0.2 };
    for _ in 0..20 {
        let ops = only_hue.draw(&mut rng).unwrap().ops;
        assert_eq!(ops.iter().flatten().count(), 1);
        assert!(ops.iter().flatten().all(|op| matches!(op, ColorOp::Hue(_))));
    }
    let never = ColorJitter { probability: 0.0, ..jitter };
    assert!((0..100).all(|_| never.draw(&mut rng).is_none()));
    // Factors reach down to max(0, 1 - b) = 0 for b >= 1.
    let strong = ColorJitter { probability: 1.0, brightness: 1.5, contrast: 0.0, saturation: 0.0, hue: 0.0 };
    let factors: Vec<f32> = (0..2000)
        .filter_map(|_| match strong.draw(&mut rng).unwrap().ops.into_iter().flatten().next() {
            Some(ColorOp::Brightness(f)) => Some(f),
            _ => None,
        })
        .collect();
    assert!(factors.iter().all(|f| (0.0..=2.5).contains(f)) && factors.iter().any(|&f| f < 0.05));
}

// ---- the whole view ----

#[test]
fn with_the_new_parts_off_views_equal_the_crop_and_flip_augmenter() {
    let shape = [1, 28, 28];
    let image = random_image(shape, 60);
    for config in [
        AugmentConfig::default(),
        AugmentConfig { crop_padding: 0, ..AugmentConfig::default() },
        AugmentConfig { horizontal_flip: false, crop_padding: 4, ..AugmentConfig::default() },
    ] {
        let (old, new) = (Augmenter::from_config(&config), ViewAugmenter::from_config(&config));
        assert_eq!(new, ViewAugmenter::from(old));
        let (mut rng_old, mut rng_new) = (rng(61), rng(61));
        for _ in 0..50 {
            assert_eq!(new.view(&image, shape, &mut rng_new), old.view(&image, shape, &mut rng_old));
        }
        assert_eq!(rng_new.random::<u64>(), rng_old.random::<u64>(), "same number of draws");
    }
}

#[test]
fn a_view_is_crop_flip_jitter_grayscale_in_that_order() {
    let shape = [3, 20, 24];
    let image = random_image(shape, 70);
    let augmenter = ViewAugmenter::from_config(&AugmentConfig {
        color_jitter_probability: 1.0,
        ..AugmentConfig::supcon()
    });
    let mut rng = rng(71);
    let plane = shape[1] * shape[2];
    for k in 0..40 {
        let mut draw = augmenter.draw(shape, &mut rng);
        draw.grayscale = k % 2 == 0;
        draw.crop_flip.flip = k % 4 < 2;
        let crop = draw.resized_crop.unwrap();
        // The reference: resize, mirror, then each jitter step and the grayscale in f64.
        let mut values: Vec<f64> =
            bilinear_reference(&image, shape, crop).iter().map(|v| v / 255.0).collect();
        if draw.crop_flip.flip {
            values.chunks_exact_mut(shape[2]).for_each(<[f64]>::reverse);
        }
        for op in draw.jitter.unwrap().ops.into_iter().flatten() {
            values = match op {
                ColorOp::Brightness(f) => brightness_reference(&values, f64::from(f)),
                ColorOp::Contrast(f) => contrast_reference(&values, shape, f64::from(f)),
                ColorOp::Saturation(f) => saturation_reference(&values, shape, f64::from(f)),
                ColorOp::Hue(h) => hue_reference(&values, shape, f64::from(h)),
            };
        }
        if draw.grayscale {
            values = grayscale_reference(&values, shape);
        }
        let view = augmenter.apply(&image, shape, &draw);
        let off = view.iter().zip(&values).filter(|(&v, &e)| (f64::from(v) - e * 255.0).abs() > 0.5 + 1e-3);
        assert_eq!(off.count(), 0, "view {k}: every pixel the rounded reference");
        if draw.grayscale {
            assert!(view[..plane] == view[plane..2 * plane] && view[..plane] == view[2 * plane..]);
        }
    }
}
