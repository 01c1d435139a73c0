//! Wiring tests of training and evaluation: each checks what the pipeline computes against an
//! expectation computed here independently (on the host, in f64 where it matters), so that a
//! term dropped, applied twice, mis-signed or fed the wrong data fails. Each was shown once to
//! fail on the bug it targets (the commit message lists the bugs injected).
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::{first_batch, options};
use hamos::data::{BatchPlan, ImageSet, Normalizer};
use hamos::eval::models::{EvalModel, Network};
use hamos::eval::probe::pixel_chunk;
use hamos::pipeline::{DiagnosticsLog, Silent, TestSets};
use hamos::train::embed::{embed_classifier, embed_dual, Embedded};
use hamos::train::step::StepReport;
use hamos::train::{self, epoch_batches, Feed, FeedBatch, Prepared, Pretrained, StartState};
use hamos::RunConfig;
use hamos_api::{DType, Forward, ParamKind, ParamStore};
use hamos_nn::{Classifier, DualHeadNet};

/// A small run on candle: 352 images, batches of 32, a small buffer, `k = 8`.
fn config(extra: &[&str]) -> RunConfig {
    let mut overrides: Vec<String> = [
        "backend=candle",
        "threads=1",
        "data.train_limit=352",
        "train.batch_size=32",
        "train.epochs=2",
        "train.pretrain_epochs=1",
        "train.buffer_size=32",
        "energy.k=8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.extend(extra.iter().map(|s| s.to_string()));
    hamos::load_config(None, overrides).unwrap()
}

/// Pretraining writes the cache; the tests of this binary take turns so that it runs once.
static PRETRAINING: Mutex<()> = Mutex::new(());

fn pretrained(config: &RunConfig, data: &Prepared) -> Pretrained {
    let _turn = PRETRAINING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = concat!(env!("CARGO_TARGET_TMPDIR"), "/hamos-wiring-cache");
    train::pretrained(config, data, Some(cache.as_ref()), &Silent).unwrap()
}

/// Prepared data, the pretrained classifier and the start of fine-tuning.
fn start(config: &RunConfig) -> (Prepared, Pretrained, StartState) {
    let data = train::prepare(config).unwrap();
    let start = pretrained(config, &data);
    let state = train::start_state(config, &data, &start).unwrap();
    (data, start, state)
}

fn f32s(params: &ParamStore, name: &str) -> Vec<f32> {
    params.get(name).unwrap().to_vec_f32().unwrap()
}

/// Every tensor of `params` on the host (as f64; integers exactly), by name.
fn host(params: &ParamStore, kind: Option<ParamKind>) -> Vec<(String, Vec<f64>)> {
    params
        .iter()
        .filter(|(_, p)| kind.is_none_or(|k| p.kind == k))
        .map(|(n, p)| {
            let values = match p.tensor.dtype() {
                DType::I64 => p.tensor.to_vec_i64().unwrap().into_iter().map(|v| v as f64).collect(),
                _ => p.tensor.to_vec_f32().unwrap().into_iter().map(f64::from).collect(),
            };
            (n.to_string(), values)
        })
        .collect()
}

/// The largest `|a - b| / (1 + |b|)`.
fn max_rel(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - y).abs() / (1.0 + y.abs())).fold(0.0, f64::max)
}

/// `(x / 255 - mean) / std` in f64.
fn normalized(pixel: u8, mean: f32, std: f32) -> f64 {
    (f64::from(pixel) / 255.0 - f64::from(mean)) / f64::from(std)
}

/// One HamOS step from a copy of `state` at learning rate 0.1, the sampler seeded by `seed`.
fn step(
    config: &RunConfig,
    data: &Prepared,
    state: &StartState,
    batch: &FeedBatch,
    with_outliers: bool,
    seed: u64,
) -> (ParamStore, StepReport) {
    common::step(config, data, state, batch, (with_outliers, seed, 0.1))
}

/// Catches an OOD term whose weight is dropped, whose sign is flipped, or whose gradient is
/// applied at weight 0, and a reported total that is not `ce + id_con + w * ood`.
#[test]
fn ood_term_enters_with_its_sign_and_weight() {
    let base = config(&[]);
    let (data, _, state) = start(&base);
    let batch = first_batch(&base, &data);
    let weights = [0.0, 0.1, 0.2];
    let runs: Vec<(ParamStore, StepReport)> = weights
        .iter()
        .map(|w| step(&config(&[&format!("train.ood_weight={w}")]), &data, &state, &batch, true, 5))
        .collect();
    let (plain, plain_report) = step(&base, &data, &state, &batch, false, 5);
    let zero = host(&runs[0].0, None);
    let without = host(&plain, None);
    for ((name, a), (_, b)) in zero.iter().zip(&without) {
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}: the step at ood_weight 0 differs from the step without outliers"
        );
    }
    let reports = weights.iter().zip(runs.iter().map(|(_, r)| r)).chain([(&0.0, &plain_report)]);
    for (w, r) in reports {
        let expected = f64::from(r.ce) + f64::from(r.id_con) + w * f64::from(r.ood);
        assert!(
            (f64::from(r.total) - expected).abs() <= 1e-6 * (1.0 + expected.abs()),
            "w = {w}: total {} is not ce {} + id_con {} + w * ood {} = {expected}",
            r.total,
            r.ce,
            r.id_con,
            r.ood
        );
    }
    let classes = data.classes as f64;
    for (w, (_, r)) in weights.iter().zip(&runs) {
        assert!(r.outliers > 0, "w = {w}: no outliers: {r:?}");
        // The uniform form is CE(U, p) = log C + KL(U || p) >= log C for every outlier.
        assert!(
            f64::from(r.ood) >= classes.ln() - 1e-4,
            "w = {w}: the uniform OOD term {} is below log C = {}: its sign is flipped",
            r.ood,
            classes.ln()
        );
        assert_eq!((r.ce, r.id_con, r.ood), (runs[0].1.ce, runs[0].1.id_con, runs[0].1.ood), "w = {w}");
    }
    assert_eq!((plain_report.outliers, plain_report.ood), (0, 0.0));

    let printed = step(&config(&["train.ood_loss=as_printed"]), &data, &state, &batch, true, 5).1;
    let uniform = &runs[1].1;
    assert!(
        (printed.ood + uniform.ood).abs() <= 1e-6 * uniform.ood.abs(),
        "as_printed reports {}, uniform {}: not its negation",
        printed.ood,
        uniform.ood
    );

    let at = |k: usize, name: &str| f32s(&runs[k].0, name);
    // The OOD term acts on the embeddings only: the classifier layer gets none of it.
    assert_eq!(at(1, "backbone.fc.weight"), at(0, "backbone.fc.weight"), "the OOD term reached backbone.fc");
    for name in ["head.2.weight", "head.0.weight", "backbone.conv1.weight", "backbone.conv3.weight"] {
        let p0 = f32s(&state.params, name);
        let delta = |k: usize| -> Vec<f64> {
            at(k, name).iter().zip(&p0).map(|(p, q)| f64::from(*p) - f64::from(*q)).collect()
        };
        let (d0, d1, d2) = (delta(0), delta(1), delta(2));
        let by_ood: Vec<f64> = d1.iter().zip(&d0).map(|(a, b)| a - b).collect();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let residual: Vec<f64> =
            d2.iter().zip(&d1).zip(&d0).map(|((c, b), a)| (c - a) - 2.0 * (b - a)).collect();
        // Rounding of the stored f32 parameters bounds the residual of each entry.
        let scale = p0.iter().map(|p| p.abs()).fold(0.0f32, f32::max);
        let rounding = 4.0 * f64::from(f32::EPSILON) * f64::from(scale);
        let worst = residual.iter().map(|r| r.abs()).fold(0.0, f64::max);
        eprintln!(
            "{name}: |delta(0.1) - delta(0)| = {:.3e}, |delta(0)| = {:.3e}, residual max {worst:.3e} (rounding {rounding:.3e}), rel {:.3e}",
            norm(&by_ood),
            norm(&d0),
            norm(&residual) / norm(&by_ood)
        );
        assert!(
            norm(&by_ood) > 20.0 * rounding * (by_ood.len() as f64).sqrt(),
            "{name}: the OOD term does not move the weights (|delta(0.1) - delta(0)| = {:.3e})",
            norm(&by_ood)
        );
        assert!(
            norm(&residual) <= 1e-3 * norm(&by_ood) + rounding * (residual.len() as f64).sqrt(),
            "{name}: the update is not linear in ood_weight: |delta(0.2) - delta(0) - 2 (delta(0.1) - delta(0))| \
             = {:.3e} against |delta(0.1) - delta(0)| = {:.3e}",
            norm(&residual),
            norm(&by_ood)
        );
    }
}

/// Catches a prototype EMA that is skipped or applied twice, and batch-norm running statistics
/// that are not updated (or not by PyTorch's rule) after a step.
#[test]
fn a_step_leaves_the_ema_prototypes_and_batch_norm_buffers() {
    let config = config(&[]);
    let (data, _, state) = start(&config);
    let batch = first_batch(&config, &data);
    let before = &state.params;

    // The step's forward pass: train mode on the pre-step parameters.
    let backend = before.backend().clone();
    let views = backend.from_f32(&batch.images, &batch.dims()).unwrap();
    let z = state.net.forward(&Forward::train(before), &views).unwrap().embeddings.to_vec_f32().unwrap();
    let (after, report) = step(&config, &data, &state, &batch, true, 3);
    assert!(report.outliers > 0);

    // CIDER's EMA, row by row in batch order: mu_y <- normalize(m mu_y + (1 - m) z_i).
    let d = state.net.embedding_dim();
    let m = config.train.prototype_momentum;
    let mut expected: Vec<f64> = f32s(before, DualHeadNet::PROTOTYPES).into_iter().map(f64::from).collect();
    let start_protos = expected.clone();
    for (row, &label) in z.chunks(d).zip(&batch.labels) {
        let mu = &mut expected[label as usize * d..(label as usize + 1) * d];
        for (p, v) in mu.iter_mut().zip(row) {
            *p = m * *p + (1.0 - m) * f64::from(*v);
        }
        let norm = mu.iter().map(|p| p * p).sum::<f64>().sqrt();
        mu.iter_mut().for_each(|p| *p /= norm);
    }
    let moved = expected.iter().zip(&start_protos).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(moved > 1e-3, "the batch hardly moves the prototypes ({moved:.3e}): the check would be blind");
    let stored = f32s(&after, DualHeadNet::PROTOTYPES);
    let err = max_rel(&stored, &expected);
    assert!(err < 2e-5, "stored prototypes differ from one EMA of this batch's embeddings by {err:.3e}");

    // bn1 sees conv1 of the views (no bias): its batch statistics on the host, in f64.
    let w = f32s(before, "backbone.conv1.weight");
    let (n, [_, h, wd]) = (batch.labels.len(), batch.shape);
    let channels = w.len() / 9;
    let (mut sum, mut sq) = (vec![0f64; channels], vec![0f64; channels]);
    for img in batch.images.chunks(h * wd).take(n) {
        for c in 0..channels {
            let k = &w[c * 9..c * 9 + 9];
            for y in 0..h {
                for x in 0..wd {
                    let mut acc = 0f64;
                    for (dy, row) in k.chunks(3).enumerate() {
                        for (dx, kv) in row.iter().enumerate() {
                            let (sy, sx) = ((y + dy).wrapping_sub(1), (x + dx).wrapping_sub(1));
                            if sy < h && sx < wd {
                                acc += f64::from(*kv) * f64::from(img[sy * wd + sx]);
                            }
                        }
                    }
                    sum[c] += acc;
                    sq[c] += acc * acc;
                }
            }
        }
    }
    let count = (n * h * wd) as f64;
    let old_mean = f32s(before, "backbone.bn1.running_mean");
    let old_var = f32s(before, "backbone.bn1.running_var");
    let (mut want_mean, mut want_var) = (Vec::new(), Vec::new());
    for c in 0..channels {
        let mean = sum[c] / count;
        let unbiased = (sq[c] - count * mean * mean) / (count - 1.0);
        want_mean.push(0.9 * f64::from(old_mean[c]) + 0.1 * mean);
        want_var.push(0.9 * f64::from(old_var[c]) + 0.1 * unbiased);
    }
    let (got_mean, got_var) =
        (f32s(&after, "backbone.bn1.running_mean"), f32s(&after, "backbone.bn1.running_var"));
    let (e_mean, e_var) = (max_rel(&got_mean, &want_mean), max_rel(&got_var, &want_var));
    assert!(
        e_mean < 1e-4 && e_var < 1e-4,
        "bn1 running statistics are not PyTorch's momentum-0.1 update of the batch statistics: \
         mean off by {e_mean:.3e}, var by {e_var:.3e} (got {:?}.., want {:?}..)",
        &got_mean[..3],
        &want_mean[..3]
    );
    for bn in ["bn1", "bn2", "bn3"] {
        for stat in ["running_mean", "running_var"] {
            let name = format!("backbone.{bn}.{stat}");
            assert_ne!(f32s(before, &name), f32s(&after, &name), "{name} did not move");
        }
        let name = format!("backbone.{bn}.num_batches_tracked");
        let count = |p: &ParamStore| p.get(&name).unwrap().to_vec_i64().unwrap()[0];
        assert_eq!(count(&after), count(before) + 1, "{name}");
    }
}

/// Catches an off-by-one step in the cosine schedule and step or epoch counters that are not
/// the global step and `step / steps_per_epoch + 1` (epochs from 1, as in logs and reports).
#[test]
fn every_step_gets_the_cosine_rate_of_its_global_step() {
    let config = config(&["train.epochs=2"]);
    let data = train::prepare(&config).unwrap();
    let start = pretrained(&config, &data);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diagnostics.jsonl");
    let progress = DiagnosticsLog::open(&path, &Silent).unwrap();
    train::finetune(&config, &data, &start, &options(dir.path(), "hamos"), &progress).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let per_epoch = data.train.len() / config.train.batch_size;
    let total = config.train.epochs * per_epoch;
    assert_eq!(lines.len(), total, "{} steps logged, {total} expected", lines.len());
    let base = config.train.learning_rate;
    for (t, line) in lines.iter().enumerate() {
        let want = base * (1.0 + (std::f64::consts::PI * t as f64 / total as f64).cos()) / 2.0;
        let (step, epoch) = (line["step"].as_u64().unwrap(), line["epoch"].as_u64().unwrap());
        let rate = line["learning_rate"].as_f64().unwrap();
        assert_eq!(step, t as u64, "line {t}: step {step}");
        assert_eq!(
            epoch,
            (t / per_epoch + 1) as u64,
            "line {t}: epoch {epoch} (from 1), {per_epoch} steps per epoch"
        );
        assert!(
            (rate - want).abs() <= 1e-12 * base,
            "step {t} of {total}: learning rate {rate}, cosine schedule gives {want}"
        );
    }
}

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

/// Catches evaluation passes that use batch statistics (outputs depending on the chunk size) or
/// change the batch-norm buffers.
#[test]
fn evaluation_mode_is_independent_of_the_chunk_size() {
    let config = config(&[]);
    let (data, start, state) = start(&config);
    let set = &data.validation;
    let (dual_buffers, plain_buffers) =
        (host(&state.params, Some(ParamKind::Buffer)), host(&start.params, Some(ParamKind::Buffer)));
    let dual: Vec<Embedded> = [set.len(), 1, 7, 32]
        .iter()
        .map(|&chunk| embed_dual(&state.net, &state.params, set, &data.normalizer, chunk).unwrap())
        .collect();
    let plain: Vec<Embedded> = [set.len(), 1, 7, 32]
        .iter()
        .map(|&chunk| embed_classifier(&start.net, &start.params, set, &data.normalizer, chunk).unwrap())
        .collect();
    let close = |a: &[f32], b: &[f32]| {
        let b: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
        max_rel(a, &b)
    };
    for (runs, what) in [(&dual, "embed_dual"), (&plain, "embed_classifier")] {
        for (run, chunk) in runs.iter().zip([set.len(), 1, 7, 32]).skip(1) {
            let whole = &runs[0];
            let errs = [
                close(&run.features, &whole.features),
                close(&run.logits, &whole.logits),
                close(&run.embeddings, &whole.embeddings),
            ];
            assert!(
                run.logits.len() == whole.logits.len() && errs.iter().all(|&e| e < 1e-5),
                "{what}: chunks of {chunk} give other outputs than the whole set (features, logits, embeddings off by {errs:?})"
            );
        }
    }
    // The start network holds the pretrained backbone and classifier: the same logits.
    let e = close(&dual[0].logits, &plain[0].logits);
    assert!(e < 1e-5, "the start network's logits differ from the pretrained classifier's by {e:.3e}");
    assert_eq!(host(&state.params, Some(ParamKind::Buffer)), dual_buffers, "embed_dual changed buffers");
    assert_eq!(
        host(&start.params, Some(ParamKind::Buffer)),
        plain_buffers,
        "embed_classifier changed buffers"
    );
}

/// Catches an initial buffer that keeps each class's first `S` training embeddings instead of
/// its last `S`, and initial prototypes that are not the normalized class means.
#[test]
fn the_initial_buffer_holds_the_last_embeddings_of_each_class() {
    let config = config(&["train.buffer_size=10"]);
    let (data, _, state) = start(&config);
    let s = config.train.buffer_size;
    let d = state.net.embedding_dim();
    let pass = embed_dual(&state.net, &state.params, &data.train, &data.normalizer, 50).unwrap();
    let labels = data.train.labels.as_ref().unwrap();
    let (rows, meta) = state.buffer.state();
    let mut protos = vec![0f64; data.classes * d];
    for c in 0..data.classes {
        let members: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] as usize == c).collect();
        assert!(members.len() > s, "class {c} has {} images, not more than S = {s}", members.len());
        assert_eq!(meta[c] as usize, s, "class {c}: rows held");
        // FIFO: the j-th image of the class went to slot j mod S; the last S survive.
        for (j, &i) in members.iter().enumerate().skip(members.len() - s) {
            let slot = &rows[(c * s + j % s) * d..(c * s + j % s + 1) * d];
            let want: Vec<f64> = pass.embeddings[i * d..(i + 1) * d].iter().map(|&v| f64::from(v)).collect();
            let err = max_rel(slot, &want);
            assert!(
                err < 1e-5,
                "class {c} slot {}: not the embedding of its image {j} (of {})",
                j % s,
                members.len()
            );
        }
        for &i in &members {
            for (p, v) in protos[c * d..(c + 1) * d].iter_mut().zip(&pass.embeddings[i * d..(i + 1) * d]) {
                *p += f64::from(*v);
            }
        }
        let mu = &mut protos[c * d..(c + 1) * d];
        let norm = mu.iter().map(|p| p * p).sum::<f64>().sqrt();
        mu.iter_mut().for_each(|p| *p /= norm);
    }
    let err = max_rel(&f32s(&state.params, DualHeadNet::PROTOTYPES), &protos);
    assert!(err < 1e-5, "initial prototypes are not the normalized class means ({err:.3e})");
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
