//! Wiring tests of the data paths: the validation split held out of training, inputs
//! normalized alike in training, evaluation and probes, the two-view feed, and OOD noise sets
//! equal in `hamos run`, `eval` and `embed`. Each checks against an expectation computed here
//! independently.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use std::collections::HashMap;

use common::wiring::*;
use hamos::data::{BatchPlan, ImageSet, Normalizer};
use hamos::eval::models::{EvalModel, Network};
use hamos::eval::probe::pixel_chunk;
use hamos::pipeline::TestSets;
use hamos::train::{self, epoch_batches, Feed};
use hamos_api::Forward;
use hamos_nn::Classifier;

/// Catches a validation split that leaks into training (not removed, or overlapping by one),
/// is unbalanced, or has the wrong size.
#[test]
fn validation_is_held_out_of_training() {
    let config = config(&[]);
    let data = train::prepare(&config).unwrap();
    let limit = config.data.train_limit;
    // The limited set, independently: the first `limit / C` (+1 for the first `limit % C`)
    // images of each class in file order.
    let full = hamos::data::load(&config.data.train, config.seed, None).unwrap();
    let classes = full.classes;
    let mut taken = vec![0usize; classes];
    let mut limited: HashMap<(i64, &[u8]), usize> = HashMap::new();
    for (i, &label) in full.labels.as_ref().unwrap().iter().enumerate() {
        let c = label as usize;
        if taken[c] < limit / classes + usize::from(c < limit % classes) {
            taken[c] += 1;
            *limited.entry((label, full.image(i))).or_default() += 1;
        }
    }
    let multiset = |set: &ImageSet| {
        let mut counts: HashMap<(i64, Vec<u8>), usize> = HashMap::new();
        for (i, &label) in set.labels.as_ref().unwrap().iter().enumerate() {
            *counts.entry((label, set.image(i).to_vec())).or_default() += 1;
        }
        counts
    };
    let (train, validation) = (multiset(&data.train), multiset(&data.validation));
    assert_eq!(data.train.len() + data.validation.len(), limit, "train + validation != train_limit");
    for ((label, image), &n) in &limited {
        let key = (*label, image.to_vec());
        let (t, v) = (train.get(&key).copied().unwrap_or(0), validation.get(&key).copied().unwrap_or(0));
        assert_eq!(
            t + v,
            n,
            "an image of class {label} is {n} times in the data, {t} in train and {v} in validation"
        );
    }
    for key in train.keys().chain(validation.keys()) {
        assert!(limited.contains_key(&(key.0, &key.1[..])), "an image outside the limited data");
    }
    let fraction = config.data.validation_fraction;
    let want: usize = taken.iter().map(|&n| (fraction * n as f64).round() as usize).sum();
    assert_eq!(data.validation.len(), want, "validation size for fraction {fraction} of {taken:?}");
    for set in [&*data.train, &data.validation] {
        let counts = set.class_counts();
        let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(hi - lo <= 1, "{}: class counts {counts:?} are not balanced", set.name);
    }
    // `load_all` (the other loading path) splits the same way.
    let sets = hamos::data::load_all(&config.data, config.seed).unwrap();
    assert!(sets.train == *data.train && sets.validation == data.validation, "load_all splits differently");
}

/// Catches normalization that forgets the mean or divides by the std twice, in the data path or
/// in the evaluation probe (ODIN's input model), which must give the embedding path's logits.
#[test]
fn inputs_are_normalized_alike_in_every_path() {
    let config = config(&[]);
    let (data, start, state) = start(&config);
    let (mean, std) = (config.data.mean[0], config.data.std[0]);
    let shape = data.train.shape;
    let plane = shape.iter().product::<usize>();
    const VALUES: [u8; 4] = [0, 17, 128, 255];
    let mut pixels = Vec::new();
    for j in 0..4 {
        pixels.extend((0..plane).map(|p| VALUES[(p / 7 + p % 5 + j) % 4]));
    }
    let mut labels = vec![0, 1, 2, 3];
    for i in 0..8 {
        pixels.extend_from_slice(data.validation.image(i * 3));
        labels.push(data.validation.labels.as_ref().unwrap()[i * 3]);
    }
    let set = ImageSet { name: "probe".into(), shape, pixels, labels: Some(labels), classes: data.classes };
    let expected: Vec<f64> = set.pixels.iter().map(|&x| normalized(x, mean, std)).collect();

    let normalizer = Normalizer::from_config(&config.data).unwrap();
    let mut ours = Vec::new();
    for i in 0..set.len() {
        ours.extend(normalizer.normalize(set.image(i), shape).unwrap());
    }
    let err = max_rel(&ours, &expected);
    assert!(err < 1e-5, "Normalizer is off (x / 255 - mean) / std by {err:.3e}");

    let backend = start.params.backend().clone();
    let exact: Vec<f32> = expected.iter().map(|&v| v as f32).collect();
    let exact = backend.from_f32(&exact, &[set.len(), shape[0], shape[1], shape[2]]).unwrap();
    let models = [
        EvalModel {
            name: "pretrained".into(),
            network: Network::Classifier(start.net.clone()),
            params: start.params.clone(),
        },
        EvalModel {
            name: "hamos".into(),
            network: Network::Dual(state.net.clone()),
            params: state.params.clone(),
        },
    ];
    for model in &models {
        let classifier: &Classifier = model.classifier();
        let want: Vec<f64> = classifier
            .logits(&Forward::eval(&model.params), &exact)
            .unwrap()
            .to_vec_f32()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let outputs = model.outputs(&set, &set, &[], &normalizer, 5).unwrap();
        let probe = outputs.probe.as_ref().unwrap();
        let probed = probe.logits(&pixel_chunk(&backend, &set, 0, set.len()).unwrap()).unwrap();
        let (embedded, probed) = (outputs.id.logits.clone(), probed.to_vec_f32().unwrap());
        let (e_embed, e_probe) = (max_rel(&embedded, &want), max_rel(&probed, &want));
        assert!(
            e_embed < 1e-4 && e_probe < 1e-4,
            "{}: logits of (x / 255 - mean) / std: embedding path off by {e_embed:.3e}, ODIN's probe by {e_probe:.3e}",
            model.name
        );
    }
}

/// Catches two views drawn from one random stream (identical halves), labels not repeated for
/// the second view, and views that are not the normalized images when augmentation is off.
#[test]
fn the_two_view_feed_stacks_both_views_with_repeated_labels() {
    let plain = config(&["data.augment.crop_padding=0", "data.augment.horizontal_flip=false"]);
    let data = train::prepare(&plain).unwrap();
    let (mean, std) = (plain.data.mean[0], plain.data.std[0]);
    let b = plain.train.batch_size;
    let len = data.train.image_len();
    let plans = BatchPlan::epoch(data.train.len(), b, plain.seed, 0);
    let feed = Feed { config: &plain, data: &data, two_views: true, augment: true, seed: plain.seed };
    for (k, batch) in epoch_batches(&feed, 0).unwrap().enumerate().take(2) {
        let batch = batch.unwrap();
        assert_eq!((batch.labels.len(), batch.images.len()), (2 * b, 2 * b * len));
        for (i, &index) in plans[k].iter().enumerate() {
            let want: Vec<f64> = data.train.image(index).iter().map(|&x| normalized(x, mean, std)).collect();
            let label = data.train.labels.as_ref().unwrap()[index];
            for view in [i, i + b] {
                let err = max_rel(&batch.images[view * len..(view + 1) * len], &want);
                assert!(err < 1e-5, "batch {k} row {view}: not the normalized image {index} ({err:.3e})");
                assert_eq!(batch.labels[view], label, "batch {k} row {view}: label of image {index}");
            }
        }
    }

    let augmenting = config(&[]);
    let data = train::prepare(&augmenting).unwrap();
    let feed =
        Feed { config: &augmenting, data: &data, two_views: true, augment: true, seed: augmenting.seed };
    let batch = epoch_batches(&feed, 0).unwrap().next().unwrap().unwrap();
    let (first, second) = batch.images.split_at(b * len);
    let differing = first.chunks(len).zip(second.chunks(len)).filter(|(x, y)| x != y).count();
    assert!(differing > b / 2, "only {differing} of {b} rows have two different views");
    for i in 0..b {
        assert_eq!(batch.labels[i], batch.labels[i + b], "row {i}: the second view's label differs");
    }
}

/// Catches OOD noise sets generated with another seed in `hamos eval` (or `hamos embed`, or
/// `load_all`) than in `hamos run`.
#[test]
fn noise_sets_are_the_same_in_run_and_eval() {
    let config = config(&["seed=7"]);
    let prepared = train::prepare(&config).unwrap();
    let TestSets { id, ood, .. } = TestSets::load(&config, &prepared).unwrap();
    let noise: Vec<&ImageSet> = ood.iter().filter(|s| s.name.ends_with("_noise")).collect();
    assert_eq!(noise.len(), 2, "the default config has two noise sets");

    // `hamos eval`: the run directory's config.toml, read back.
    let dir = tempfile::tempdir().unwrap();
    hamos::RunDir::at(dir.path()).write_provenance(&config).unwrap();
    let again = hamos::eval::rerun::run_config(dir.path()).unwrap();
    let prepared_again = train::prepare(&again).unwrap();
    let TestSets { id: id_again, ood: ood_again, .. } = TestSets::load(&again, &prepared_again).unwrap();
    assert!(id_again == id, "the ID test set differs in `hamos eval`");
    assert_eq!(ood_again.len(), ood.len());
    let all = hamos::data::load_all(&config.data, config.seed).unwrap();
    for (k, set) in ood.iter().enumerate() {
        let embedded = hamos::embed_cmd::resolve_set(&again, &set.name).unwrap();
        for (path, other) in
            [("hamos eval", &ood_again[k]), ("hamos embed", &embedded), ("load_all", &all.ood[k])]
        {
            assert_eq!(other.name, set.name, "{path}: OOD set {k}");
            assert!(
                other.pixels == set.pixels,
                "{path}: OOD set `{}` differs from `hamos run`'s ({} of {} pixels)",
                set.name,
                other.pixels.iter().zip(&set.pixels).filter(|(a, b)| a != b).count(),
                set.pixels.len()
            );
        }
    }
    // The noise follows the run's seed: another seed gives other pixels.
    let other = self::config(&["seed=8"]);
    let ood_other = TestSets::load(&other, &train::prepare(&other).unwrap()).unwrap().ood;
    for set in &noise {
        let twin = ood_other.iter().find(|s| s.name == set.name).unwrap();
        assert!(twin.pixels != set.pixels, "`{}` ignores the seed", set.name);
    }
}
