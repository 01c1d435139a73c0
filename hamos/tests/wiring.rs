//! Wiring tests of training and evaluation: each checks what the pipeline computes against an
//! expectation computed here independently (on the host, in f64 where it matters), so that a
//! term dropped, applied twice, mis-signed or fed the wrong data fails. Each was shown once to
//! fail on the bug it targets (the commit message lists the bugs injected).
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use common::wiring::*;
use common::{first_batch, options};
use hamos::pipeline::{DiagnosticsLog, Silent};
use hamos::train::embed::{embed_classifier, embed_dual, Embedded};
use hamos::train::step::StepReport;
use hamos::train::{self};
use hamos_api::{Forward, ParamKind, ParamStore};
use hamos_nn::DualHeadNet;

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
