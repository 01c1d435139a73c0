//! The evaluation's records and scorers on hand-made inputs: the `average`, `near_average` and
//! `far_average` records are the means of their groups' per-set records; `knn_features` is the
//! brute-force k-th-nearest-neighbour distance on the normalized penultimate features; the OOD
//! sets' `group` in the config round-trips and a bad value is refused naming the field.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use hamos::eval::evaluate::{self, MetricRecord, ModelOutputs, PlannedScorer, Scores, View};
use hamos::eval::job::{feature_knn, ood_groups, KNN_FEATURES};
use hamos::eval::metrics::OodMetrics;
use hamos::train::embed::Embedded;
use hamos::{ConfigSources, OodGroup};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Scores of `n` ID rows and one random OOD set per group, shifted so the metrics vary.
fn random_scores(rng: &mut StdRng, groups: &[OodGroup]) -> Scores {
    let mut draw =
        |n: usize, shift: f64| -> Vec<f64> { (0..n).map(|_| rng.random::<f64>() + shift).collect() };
    let id = draw(97, 0.4);
    let ood = groups
        .iter()
        .enumerate()
        .map(|(i, _)| (format!("set{i}"), draw(40 + 13 * i, 0.1 * i as f64)))
        .collect();
    Scores {
        model: "hamos".into(),
        scorer: "knn".into(),
        id,
        ood,
        groups: groups.to_vec(),
        id_accuracy: 0.875,
    }
}

/// The five metric fields and the ID accuracy, named.
fn fields(r: &MetricRecord) -> [(&'static str, f64); 6] {
    [
        ("fpr95", r.fpr95),
        ("auroc", r.auroc),
        ("aupr_in", r.aupr_in),
        ("aupr_out", r.aupr_out),
        ("fpr95_openood", r.fpr95_openood),
        ("id_acc", r.id_acc),
    ]
}

#[test]
fn averages_are_the_means_of_their_groups() {
    use OodGroup::{Far, Near};
    let mut rng = StdRng::seed_from_u64(11);
    let groups = [Near, Far, Near, Far, Far];
    let scores = random_scores(&mut rng, &groups);
    let records = evaluate::records(&scores).unwrap();
    let datasets: Vec<&str> = records.iter().map(|r| r.dataset.as_str()).collect();
    assert_eq!(datasets, ["set0", "set1", "set2", "set3", "set4", "average", "near_average", "far_average"]);
    // Per-set records against the metrics computed here from the same scores.
    for ((name, ood), (record, group)) in scores.ood.iter().zip(records.iter().zip(groups)) {
        let m = OodMetrics::compute(&scores.id, ood).unwrap();
        let want = [m.fpr95, m.auroc, m.aupr_in, m.aupr_out, m.fpr95_openood, 0.875];
        for ((field, got), want) in fields(record).iter().zip(want) {
            assert_eq!(*got, want, "{name} {field}");
        }
        assert_eq!((record.model.as_str(), record.scorer.as_str()), ("hamos", "knn"));
        assert_eq!(record.group, group.as_str(), "{name}");
    }
    let per_set = &records[..5];
    for (dataset, group, members) in [
        ("average", "all", vec![0, 1, 2, 3, 4]),
        ("near_average", "near", vec![0, 2]),
        ("far_average", "far", vec![1, 3, 4]),
    ] {
        let record = records.iter().find(|r| r.dataset == dataset).unwrap();
        assert_eq!(record.group, group);
        for (k, (field, got)) in fields(record).iter().enumerate() {
            let want = members.iter().map(|&i| fields(&per_set[i])[k].1).sum::<f64>() / members.len() as f64;
            assert!((got - want).abs() <= 1e-12, "{dataset} {field}: got {got}, want {want}");
        }
    }
    // The group averages differ from the overall one on these scores (the test has teeth).
    assert_ne!(records[6].auroc, records[5].auroc);
    assert_ne!(records[7].fpr95_openood, records[6].fpr95_openood);

    // A group without sets has no record; a mismatched group list is a named error.
    let far_only = random_scores(&mut rng, &[Far, Far]);
    let names: Vec<String> = evaluate::records(&far_only).unwrap().into_iter().map(|r| r.dataset).collect();
    assert_eq!(names, ["set0", "set1", "average", "far_average"]);
    let mut broken = far_only;
    broken.groups.pop();
    let err = evaluate::records(&broken).unwrap_err().to_string();
    assert!(err.contains("1 OOD groups for 2 OOD sets") && err.contains("hamos / knn"), "{err}");
}

/// Rows with random penultimate features (not unit norm) and unrelated unit embeddings.
fn rows(rng: &mut StdRng, n: usize, shift: f32) -> Embedded {
    let (w, d, classes) = (7, 4, 3);
    let features: Vec<f32> = (0..n * w).map(|_| 3.0 * (rng.random::<f32>() - 0.5) + shift).collect();
    let mut embeddings: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>() - 0.5).collect();
    for row in embeddings.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    Embedded {
        features,
        feature_dim: w,
        logits: (0..n * classes).map(|_| rng.random::<f32>()).collect(),
        classes,
        embeddings,
        embedding_dim: d,
        labels: Some((0..n as i64).map(|i| i % classes as i64).collect()),
    }
}

/// Minus the Euclidean distance from each normalized query row to its `k`-th nearest
/// normalized bank row, in f64 by sorting all distances.
fn knn_reference(bank: &[f32], queries: &[f32], dim: usize, k: usize) -> Vec<f64> {
    let unit = |row: &[f32]| -> Vec<f64> {
        let norm = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        row.iter().map(|&v| f64::from(v) / norm).collect()
    };
    let bank: Vec<Vec<f64>> = bank.chunks(dim).map(unit).collect();
    queries
        .chunks(dim)
        .map(|q| {
            let q = unit(q);
            let mut d: Vec<f64> = bank
                .iter()
                .map(|b| b.iter().zip(&q).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt())
                .collect();
            d.sort_by(f64::total_cmp);
            -d[k - 1]
        })
        .collect()
}

#[test]
fn knn_features_is_brute_force_knn_on_normalized_features() {
    let config = hamos::load_config(None, vec!["scorer.k=5".into()]).unwrap();
    let backend = hamos::open_backend(&config).unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let outputs = ModelOutputs {
        name: "hamos".into(),
        train: rows(&mut rng, 60, 0.0),
        id: rows(&mut rng, 25, 0.0),
        ood: vec![("near".into(), rows(&mut rng, 18, 0.7)), ("far".into(), rows(&mut rng, 21, -1.5))],
        head: None,
        probe: None,
    };
    let planned = feature_knn(&config).unwrap().unwrap();
    assert_eq!((planned.name.as_str(), planned.view), (KNN_FEATURES, View::Features));
    let scores = evaluate::score_model(&backend, &outputs, &planned, None).unwrap();
    let head = PlannedScorer::new("knn", hamos::eval::job::configured_scorer(&config).unwrap());
    let head_scores = evaluate::score_model(&backend, &outputs, &head, None).unwrap();
    let sets = std::iter::once(("id", &outputs.id, &scores.id, &head_scores.id)).chain(
        outputs.ood.iter().zip(scores.ood.iter().zip(&head_scores.ood)).map(|((name, rows), (s, h))| {
            assert_eq!((&s.0, &h.0), (name, name));
            (name.as_str(), rows, &s.1, &h.1)
        }),
    );
    let close = |got: &[f64], want: &[f64], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-5, "{what} row {i}: got {g}, want {w}");
        }
    };
    for (name, rows, features_scores, head_scores) in sets {
        // k = 5 from the configured `knn` scorer, on the features (width 7)...
        let want = knn_reference(&outputs.train.features, &rows.features, 7, 5);
        close(features_scores, &want, &format!("knn_features on {name}"));
        // ... while `knn` reads the head's embeddings (width 4): a different score.
        let want_head = knn_reference(&outputs.train.embeddings, &rows.embeddings, 4, 5);
        close(head_scores, &want_head, &format!("knn on {name}"));
        assert!(features_scores.iter().zip(head_scores).any(|(a, b)| (a - b).abs() > 1e-3), "{name}");
    }
    // Without test images the sets fall in the default group; `hamos run` passes the config's.
    assert_eq!(scores.groups, [OodGroup::Far, OodGroup::Far]);

    // Another configured scorer: `knn_features` keeps KNN with its defaults (k = 50).
    let other = hamos::load_config(None, vec!["scorer.kind=\"msp\"".into()]).unwrap();
    let planned = feature_knn(&other).unwrap().unwrap();
    let text = toml::to_string(&planned.scorer).unwrap();
    assert!(text.contains("kind = \"knn\"") && text.contains("k = 50"), "{text}");
}

fn load(toml: &str) -> hamos_api::Result<hamos::RunConfig> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(&path, toml).unwrap();
    ConfigSources { base: None, file: Some(path), env: false, overrides: Vec::new() }.load()
}

#[test]
fn ood_group_round_trips_and_bad_values_name_the_field() {
    use OodGroup::{Far, Near};
    let defaults = hamos::load_config(None, Vec::new()).unwrap();
    let named: Vec<(&str, OodGroup)> = defaults.data.ood.iter().map(|s| (s.name.as_str(), s.group)).collect();
    assert_eq!(
        named,
        [
            ("mnist", Near),
            ("animal_mnist", Near),
            ("textures", Far),
            ("gaussian_noise", Far),
            ("uniform_noise", Far)
        ]
    );
    let written =
        "[[data.ood]]\nname = \"digits\"\ngroup = \"near\"\ndataset = { format = \"shipped\", name = \
                   \"mnist\" }\n[[data.ood]]\nname = \"noise\"\ndataset = { format = \"noise\", kind = \
                   \"uniform\", count = 10 }\n";
    let config = load(written).unwrap();
    // A set that does not say is far.
    assert_eq!(ood_groups(&config), [Near, Far]);
    let again = load(&config.to_toml().unwrap()).unwrap();
    assert_eq!(again.data.ood, config.data.ood);
    assert!(config.to_toml().unwrap().contains("group = \"far\""));
    for (bad, says) in [("\"middle\"", "`near` or `far`"), ("3", "OodGroup")] {
        let text = written.replace("group = \"near\"", &format!("group = {bad}"));
        let message = load(&text).unwrap_err().to_string();
        assert!(!message.contains('\n'), "{bad}: {message}");
        assert!(message.contains("data.ood.0.group") && message.contains(says), "{bad}: {message}");
    }
}
