//! The evaluation plots: each writes a decodable 900x600 PNG on realistic synthetic data, the
//! ROC/AUROC and PCA helpers match references, and bad inputs are errors.
//!
//! `HAMOS_PLOTS_PREVIEW=/some/dir` keeps a copy of every rendered plot there, for eyeballing.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

#[path = "../src/eval/plots.rs"]
mod plots;

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

fn normal(rng: &mut StdRng, n: usize, mean: f64, std: f64) -> Vec<f64> {
    let d = Normal::new(mean, std).unwrap();
    (0..n).map(|_| d.sample(rng)).collect()
}

/// Asserts a 900x600 PNG that is not blank, and keeps a copy for previewing if asked.
fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
    assert_eq!(reader.info().size(), (900, 600));
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut buf).unwrap();
    let inked = buf.chunks_exact(3).filter(|p| p.iter().any(|&c| c < 200)).count();
    assert!(inked > 5_000, "{}: only {inked} dark pixels", path.display());
    if let Some(dir) = std::env::var_os("HAMOS_PLOTS_PREVIEW") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, PathBuf::from(dir).join(path.file_name().unwrap())).unwrap();
    }
}

fn data_err<T: std::fmt::Debug>(r: hamos_api::Result<T>, needle: &str) {
    match r {
        Err(hamos_api::Error::Data(msg)) => assert!(msg.contains(needle), "`{msg}` lacks `{needle}`"),
        other => panic!("expected a data error with `{needle}`, got {other:?}"),
    }
}

#[test]
fn score_histograms_png() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut id = normal(&mut rng, 3000, 1.0, 0.3);
    id.extend([f64::NAN, f64::INFINITY]);
    let textures = normal(&mut rng, 2000, 0.0, 0.4);
    let mnist = normal(&mut rng, 2000, -0.4, 0.35);
    let outliers = normal(&mut rng, 1000, 0.3, 0.3);
    let dir = tempfile::tempdir().unwrap();
    // A parent that does not exist yet.
    let path = dir.path().join("nested/hist.png");
    plots::score_histograms(
        &path,
        "CIFAR-10 energy scores",
        &id,
        &[("Textures", &textures), ("MNIST", &mnist)],
        Some(&outliers),
    )
    .unwrap();
    check_png(&path);
    // Constant scores and no outliers still plot.
    let flat = dir.path().join("hist-flat.png");
    plots::score_histograms(&flat, "constant", &[2.0; 5], &[("same", &[2.0; 3])], None).unwrap();
    check_png(&flat);
}

#[test]
fn roc_curves_png() {
    let mut rng = StdRng::seed_from_u64(2);
    let id = normal(&mut rng, 2000, 1.0, 0.3);
    let near = normal(&mut rng, 2000, 0.6, 0.4);
    let far = normal(&mut rng, 2000, 0.0, 0.4);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roc.png");
    plots::roc_curves(&path, "ROC, ID = CIFAR-10", &id, &[("near-OOD", &near), ("far-OOD", &far)]).unwrap();
    check_png(&path);
}

/// `classes` clusters on the unit sphere in `dim` dimensions, and outliers between them.
fn clustered(rng: &mut StdRng, classes: usize, per: usize, dim: usize) -> (Vec<f32>, Vec<i64>, Vec<f32>) {
    let unit = |v: Vec<f64>| {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let centres: Vec<Vec<f64>> = (0..classes).map(|_| unit(normal(rng, dim, 0.0, 1.0))).collect();
    let (mut id, mut labels, mut outliers) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..classes * per {
        let c = i % classes;
        let noise = normal(rng, dim, 0.0, 0.08);
        id.extend(unit(centres[c].iter().zip(noise).map(|(a, b)| a + b).collect()).iter().map(|&x| x as f32));
        labels.push(c as i64 + 3);
    }
    for _ in 0..per * 2 {
        let (a, b) = (rng.random_range(0..classes), rng.random_range(0..classes));
        let t: f64 = rng.random();
        let noise = normal(rng, dim, 0.0, 0.1);
        let mix = centres[a].iter().zip(&centres[b]).zip(noise).map(|((x, y), e)| t * x + (1.0 - t) * y + e);
        outliers.extend(unit(mix.collect()).iter().map(|&x| x as f32));
    }
    (id, labels, outliers)
}

#[test]
fn embedding_projection_png() {
    let mut rng = StdRng::seed_from_u64(3);
    let dim = 32;
    let (id, labels, outliers) = clustered(&mut rng, 10, 300, dim);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("embeddings.png");
    plots::embedding_projection(
        &path,
        "HamOS: ID training embeddings (by class) and synthesized outliers, PCA",
        &id,
        &labels,
        dim,
        &outliers,
        2000,
    )
    .unwrap();
    check_png(&path);
    let (id, labels, outliers) = clustered(&mut rng, 100, 20, dim);
    let many = dir.path().join("embeddings-100.png");
    plots::embedding_projection(&many, "100 classes", &id, &labels, dim, &outliers, 1000).unwrap();
    check_png(&many);
    // One ID row and one outlier: no variance, still a plot.
    let one = dir.path().join("embeddings-1.png");
    plots::embedding_projection(&one, "one row", &[0.5, 0.5], &[1], 2, &[0.5, -0.5], 10).unwrap();
    check_png(&one);
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn principal_axes_recover_known_directions() {
    let mut rng = StdRng::seed_from_u64(4);
    let dim = 12;
    let unit = |v: Vec<f64>| {
        let n = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<_>>()
    };
    let d1 = unit((0..dim).map(|i| (i as f64 - 4.0).sin() + 0.3).collect());
    let raw2: Vec<f64> = (0..dim).map(|i| (i as f64 * 1.7).cos()).collect();
    let d2 = unit(raw2.iter().zip(&d1).map(|(x, a)| x - dot(&raw2, &d1) * a).collect());
    let mut rows = Vec::new();
    for _ in 0..4000 {
        let (s, t): (f64, f64) = (
            Normal::new(0.0, 5.0).unwrap().sample(&mut rng),
            Normal::new(0.0, 2.0).unwrap().sample(&mut rng),
        );
        let noise = normal(&mut rng, dim, 0.0, 0.2);
        rows.extend((0..dim).map(|i| 7.0 + s * d1[i] + t * d2[i] + noise[i]));
    }
    let axes = plots::principal_axes(&rows, dim, 3);
    assert_eq!(axes.len(), 3);
    assert!(dot(&axes[0], &d1).abs() > 0.999, "axis 1 · d1 = {}", dot(&axes[0], &d1));
    assert!(dot(&axes[1], &d2).abs() > 0.995, "axis 2 · d2 = {}", dot(&axes[1], &d2));
    for (i, a) in axes.iter().enumerate() {
        for (j, b) in axes.iter().enumerate() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot(a, b) - want).abs() < 1e-9, "axes {i}, {j} not orthonormal");
        }
    }
    // Deterministic sign: the largest component is positive.
    let big = axes[0].iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
    assert!(big > 0.0);
    // Degenerate inputs still give orthonormal axes, at most `dim` of them.
    let flat = plots::principal_axes(&[1.0; 12], 3, 5);
    assert_eq!(flat.len(), 3);
    assert!((dot(&flat[0], &flat[0]) - 1.0).abs() < 1e-12 && dot(&flat[0], &flat[1]).abs() < 1e-12);
    assert!(plots::principal_axes(&[1.0, 2.0], 0, 2).is_empty());
}

#[test]
fn roc_auroc_is_exact_with_ties() {
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..50 {
        // Coarse values, so that many scores tie within and across the sets; -0.0 ties 0.0.
        let mut id: Vec<f64> =
            (0..rng.random_range(1..40)).map(|_| f64::from(rng.random_range(-3..6)) / 2.0).collect();
        let ood: Vec<f64> =
            (0..rng.random_range(1..40)).map(|_| f64::from(rng.random_range(-6..3)) / 2.0).collect();
        id.push(-0.0);
        let mut wins = 0.0;
        for a in &id {
            for b in &ood {
                wins += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let (points, auroc) = plots::roc(&id, &ood);
        assert!((auroc - wins / (id.len() * ood.len()) as f64).abs() < 1e-12);
        assert_eq!(points.first(), Some(&(0.0, 0.0)));
        assert_eq!(points.last(), Some(&(1.0, 1.0)));
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
    assert_eq!(plots::roc(&[1.0, f64::INFINITY], &[f64::NEG_INFINITY, 1.0]).1, 0.875);
}

#[test]
fn bad_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.png");
    let s = [0.1, 0.2];
    data_err(plots::score_histograms(&p, "t", &[], &[("o", &s)], None), "`ID` has no usable score (0 given)");
    data_err(plots::score_histograms(&p, "t", &s, &[("o", &[])], None), "`o` has no usable score");
    data_err(plots::score_histograms(&p, "t", &s, &[("o", &s)], Some(&[])), "outliers");
    data_err(plots::score_histograms(&p, "t", &s, &[], None), "no OOD set");
    data_err(
        plots::score_histograms(&p, "t", &s, &[("o", &[f64::INFINITY])], None),
        "`o` has no usable score (1 given)",
    );
    data_err(plots::roc_curves(&p, "t", &[], &[("o", &s)]), "`ID`");
    data_err(plots::roc_curves(&p, "t", &s, &[]), "no OOD set");
    data_err(plots::roc_curves(&p, "t", &s, &[("o", &[f64::NAN])]), "`o`");
    let e = [0.0f32; 6];
    data_err(plots::embedding_projection(&p, "t", &e, &[0, 1, 2], 2, &e[..5], 10), "outliers");
    data_err(plots::embedding_projection(&p, "t", &e[..5], &[0, 1], 2, &e, 10), "ID embeddings");
    data_err(plots::embedding_projection(&p, "t", &e, &[0, 1], 2, &e, 10), "2 labels for 3 ID rows");
    data_err(plots::embedding_projection(&p, "t", &e, &[0, 1, 2], 0, &e, 10), "dim (0)");
    data_err(plots::embedding_projection(&p, "t", &[], &[], 2, &e, 10), "ID embeddings");
    data_err(plots::embedding_projection(&p, "t", &e, &[0, 1, 2], 2, &[], 10), "outliers");
    data_err(plots::embedding_projection(&p, "t", &e, &[0, 1, 2], 2, &[f32::NAN, 0.0], 10), "non-finite");
    data_err(plots::score_histograms(&p, "t", &[-1e308], &[("o", &[1e308])], None), "too wide");
    assert!(!p.exists(), "a failed plot left a file");
    // A path under a regular file cannot be created: an I/O error, not a panic.
    let file = dir.path().join("file");
    std::fs::write(&file, b"").unwrap();
    let r = plots::roc_curves(&file.join("roc.png"), "t", &s, &[("o", &s)]);
    assert!(matches!(r, Err(hamos_api::Error::Io { .. })), "{r:?}");
}

#[test]
fn scores_and_roc_writes_both_plots_under_the_model_and_scorer() {
    let mut rng = StdRng::seed_from_u64(9);
    let id = normal(&mut rng, 500, 1.0, 0.3);
    let ood = vec![("mnist".to_string(), normal(&mut rng, 400, 0.2, 0.4))];
    let dir = tempfile::tempdir().unwrap();
    plots::scores_and_roc(dir.path(), ("hamos", "knn"), &id, &ood, None).unwrap();
    check_png(&dir.path().join("hamos_knn_scores.png"));
    check_png(&dir.path().join("hamos_knn_roc.png"));
}
