//! The `[data.augment]` config: its fields, defaults, the SupCon recipe, its TOML form and
//! the validation of every field.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use hamos::data::augment::{CropBox, ViewAugmenter, ViewDraw};
use hamos::data::{Augmenter, ViewParams};
use hamos::{AugmentConfig, DataConfig};
use hamos_api::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random_image(shape: [usize; 3], seed: u64) -> Vec<u8> {
    let mut rng = rng(seed);
    (0..shape.iter().product::<usize>()).map(|_| rng.random()).collect()
}

fn field_of(result: hamos_api::Result<()>) -> String {
    match result {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected an invalid-config error, got {other:?}"),
    }
}

#[test]
fn augment_config_defaults_recipe_and_toml_round_trip() {
    let default = AugmentConfig::default();
    assert_eq!((default.crop_padding, default.horizontal_flip), (2, true));
    assert!(!default.resized_crop);
    assert_eq!((default.color_jitter_probability, default.grayscale_probability), (0.0, 0.0));
    assert_eq!(DataConfig::default().augment, default);
    default.validate().unwrap();
    AugmentConfig::supcon().validate().unwrap();

    // What a user writes for the authors' recipe.
    let text = "[augment]\ncrop_padding = 0\nresized_crop = true\ncolor_jitter_probability = 0.8\n\
                grayscale_probability = 0.2\n";
    let data: DataConfig = toml::from_str(text).unwrap();
    assert_eq!(data.augment, AugmentConfig::supcon());
    data.validate().unwrap();

    // Every field away from its default survives TOML.
    let custom = AugmentConfig {
        crop_padding: 0,
        horizontal_flip: false,
        resized_crop: true,
        crop_scale: [0.3, 0.9],
        crop_ratio: [0.5, 2.0],
        color_jitter_probability: 0.7,
        brightness: 0.1,
        contrast: 0.2,
        saturation: 0.3,
        hue: 0.05,
        grayscale_probability: 0.15,
    };
    custom.validate().unwrap();
    let data = DataConfig { augment: custom.clone(), ..DataConfig::default() };
    let back: DataConfig = toml::from_str(&toml::to_string(&data).unwrap()).unwrap();
    assert_eq!(back.augment, custom);
    let back: AugmentConfig = toml::from_str(&toml::to_string(&AugmentConfig::supcon()).unwrap()).unwrap();
    assert_eq!(back, AugmentConfig::supcon());

    let unknown = toml::from_str::<DataConfig>("[augment]\ncolour_jitter_probability = 0.5\n").unwrap_err();
    assert!(unknown.to_string().contains("colour_jitter_probability"), "{unknown}");
}

#[test]
fn every_invalid_augment_value_is_refused_naming_its_field() {
    let base = AugmentConfig { crop_padding: 0, ..AugmentConfig::supcon() };
    let cases: Vec<(&str, AugmentConfig)> = vec![
        ("data.augment.crop_padding", AugmentConfig { crop_padding: 2, ..base.clone() }),
        ("data.augment.crop_scale", AugmentConfig { crop_scale: [0.0, 1.0], ..base.clone() }),
        ("data.augment.crop_scale", AugmentConfig { crop_scale: [0.6, 0.5], ..base.clone() }),
        ("data.augment.crop_scale", AugmentConfig { crop_scale: [0.2, 1.5], ..base.clone() }),
        ("data.augment.crop_scale", AugmentConfig { crop_scale: [f64::NAN, 1.0], ..base.clone() }),
        ("data.augment.crop_scale", AugmentConfig { crop_scale: [-0.1, 0.5], ..base.clone() }),
        ("data.augment.crop_ratio", AugmentConfig { crop_ratio: [0.0, 1.0], ..base.clone() }),
        ("data.augment.crop_ratio", AugmentConfig { crop_ratio: [2.0, 1.0], ..base.clone() }),
        ("data.augment.crop_ratio", AugmentConfig { crop_ratio: [1.0, f64::INFINITY], ..base.clone() }),
        (
            "data.augment.color_jitter_probability",
            AugmentConfig { color_jitter_probability: -0.1, ..base.clone() },
        ),
        (
            "data.augment.color_jitter_probability",
            AugmentConfig { color_jitter_probability: 1.1, ..base.clone() },
        ),
        (
            "data.augment.color_jitter_probability",
            AugmentConfig { color_jitter_probability: f64::NAN, ..base.clone() },
        ),
        ("data.augment.brightness", AugmentConfig { brightness: -0.4, ..base.clone() }),
        ("data.augment.brightness", AugmentConfig { brightness: f64::INFINITY, ..base.clone() }),
        ("data.augment.contrast", AugmentConfig { contrast: -1.0, ..base.clone() }),
        ("data.augment.saturation", AugmentConfig { saturation: f64::NAN, ..base.clone() }),
        ("data.augment.hue", AugmentConfig { hue: 0.6, ..base.clone() }),
        ("data.augment.hue", AugmentConfig { hue: -0.1, ..base.clone() }),
        ("data.augment.grayscale_probability", AugmentConfig { grayscale_probability: 2.0, ..base.clone() }),
        ("data.augment.grayscale_probability", AugmentConfig { grayscale_probability: -0.5, ..base.clone() }),
    ];
    for (field, config) in cases {
        assert_eq!(field_of(config.validate()), field, "{config:?}");
        // The `[data]` section's check goes through it.
        let data = DataConfig { augment: config, ..DataConfig::default() };
        assert_eq!(field_of(data.validate()), field);
    }
    // Edge values are fine: a fixed scale and ratio, probability 1, no jitter, half a turn.
    AugmentConfig {
        crop_scale: [1.0, 1.0],
        crop_ratio: [1.0, 1.0],
        color_jitter_probability: 1.0,
        brightness: 0.0,
        contrast: 3.0,
        saturation: 0.0,
        hue: 0.5,
        grayscale_probability: 1.0,
        ..base
    }
    .validate()
    .unwrap();
}

#[test]
fn the_recipe_loads_as_a_run_config_section() {
    let text = "[data.augment]\ncrop_padding = 0\nresized_crop = true\ncolor_jitter_probability = 0.8\n\
                grayscale_probability = 0.2\n";
    let sources = hamos::ConfigSources { base: Some(text.into()), file: None, env: false, overrides: vec![] };
    assert_eq!(sources.load().unwrap().data.augment, AugmentConfig::supcon());
    // Left at crop_padding = 2 the two crops clash; an override out of range is named too.
    let load = |base: &str, overrides: &[&str]| {
        let overrides = overrides.iter().map(|s| s.to_string()).collect();
        let sources = hamos::ConfigSources { base: Some(base.into()), file: None, env: false, overrides };
        sources.load().unwrap_err().to_string()
    };
    let message = load("[data.augment]\nresized_crop = true\n", &[]);
    assert!(message.contains("data.augment.crop_padding"), "{message}");
    let message = load(text, &["data.augment.hue=0.7"]);
    assert!(message.contains("data.augment.hue"), "{message}");
}

#[test]
fn two_views_of_one_image_differ_under_the_supcon_recipe() {
    let augmenter = ViewAugmenter::from_config(&AugmentConfig::supcon());
    for (shape, seed) in [([3, 32, 32], 80), ([1, 28, 28], 81)] {
        let image = random_image(shape, seed);
        let mut rng_a = rng(seed);
        let (a, b) = (augmenter.view(&image, shape, &mut rng_a), augmenter.view(&image, shape, &mut rng_a));
        assert_eq!(a.len(), image.len());
        assert_ne!(a, b);
        assert_ne!(a, image);
        // The same stream gives the same views.
        let mut rng_b = rng(seed);
        assert_eq!(augmenter.view(&image, shape, &mut rng_b), a);
        assert_eq!(augmenter.view(&image, shape, &mut rng_b), b);
    }
    // A padded crop before a resized crop (only possible by hand) keeps the pixel count.
    let both = ViewAugmenter {
        crop_flip: Augmenter { crop_padding: 3, horizontal_flip: true },
        ..ViewAugmenter::from_config(&AugmentConfig::supcon())
    };
    let view = both.view(&random_image([3, 8, 8], 82), [3, 8, 8], &mut rng(83));
    assert_eq!(view.len(), 3 * 64);
    let params = ViewParams { dy: 3, dx: 3, flip: false };
    let draw = ViewDraw {
        crop_flip: params,
        resized_crop: Some(CropBox { top: 0, left: 0, height: 8, width: 8 }),
        jitter: None,
        grayscale: false,
    };
    let image = random_image([3, 8, 8], 84);
    assert_eq!(both.apply(&image, [3, 8, 8], &draw), image, "centred pad-crop, full resized crop");
}

// ---- the config ----
