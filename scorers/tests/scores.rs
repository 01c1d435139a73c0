//! Every scorer against the f64 references of `common`, on random data (candle CPU).

mod common;

use common::*;
use hamos_api::{Result, ScoreInput, Scorer, Tensor};
use hamos_scorers::{EnergyScorer, KnnScorer, MahalanobisScorer, MspScorer};
use rand::Rng;

fn input(embeddings: Tensor, logits: Option<Tensor>, labels: Option<Tensor>) -> ScoreInput {
    ScoreInput { embeddings, logits, labels, features: None, head: None, inputs: None }
}

#[test]
fn knn_matches_reference_in_any_chunking() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(1);
    let backend = backend();
    let train = unit(&gaussian_rows(&mut rng, 120, &[0.0; 8], 1.0));
    let test = gaussian_rows(&mut rng, 37, &[0.0; 8], 1.0); // not normalized: the scorer normalizes
    for (k, chunk_rows) in [(1, 1024), (5, 7), (50, 16), (120, 1)] {
        let fitted = KnnScorer { k, chunk_rows }.fit(&input(tensor(&backend, &train)?, None, None))?;
        let got = fitted.score(&input(tensor(&backend, &test)?, None, None))?;
        assert_eq!(got.dims(), vec![37]);
        assert_all_close(&got.to_vec_f32()?, &knn_ref(&train, &test, k), 1e-5, &format!("knn k={k}"));
    }
    Ok(())
}

#[test]
fn knn_scores_points_near_the_training_cluster_higher() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(2);
    let backend = backend();
    let mut center = vec![0.0; 16];
    center[0] = 1.0;
    let train = unit(&gaussian_rows(&mut rng, 300, &center, 0.1));
    let near = unit(&gaussian_rows(&mut rng, 50, &center, 0.1));
    let far = unit(&gaussian_rows(&mut rng, 50, &[0.0; 16], 1.0));
    let fitted = KnnScorer::default().fit(&input(tensor(&backend, &train)?, None, None))?;
    let near = fitted.score(&input(tensor(&backend, &near)?, None, None))?.to_vec_f32()?;
    let far = fitted.score(&input(tensor(&backend, &far)?, None, None))?.to_vec_f32()?;
    let worst_near = near.iter().copied().fold(f32::INFINITY, f32::min);
    let best_far = far.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!(worst_near > best_far, "near {worst_near} vs far {best_far}");
    Ok(())
}

#[test]
fn mahalanobis_matches_reference() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(3);
    let backend = backend();
    let d = 6;
    let centers: Vec<Vec<f64>> =
        (0..4).map(|c| (0..d).map(|j| if j == c { 1.0 } else { 0.0 }).collect()).collect();
    let (mut train, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..240 {
        let c = rng.random_range(0..4);
        train.extend(gaussian_rows(&mut rng, 1, &centers[c], 0.3));
        labels.push(c);
    }
    let train = unit(&train);
    let test = unit(&gaussian_rows(&mut rng, 30, &[0.2; 6], 1.0));
    for ridge in [0.0, 1e-6, 0.1] {
        let scorer = MahalanobisScorer { ridge };
        let fitted =
            scorer.fit(&input(tensor(&backend, &train)?, None, Some(label_tensor(&backend, &labels)?)))?;
        let got = fitted.score(&input(tensor(&backend, &test)?, None, None))?;
        assert_eq!(got.dims(), vec![30]);
        let want = mahalanobis_ref(&train, &labels, &test, ridge);
        assert_all_close(&got.to_vec_f32()?, &want, 1e-3, &format!("mahalanobis ridge={ridge}"));
    }
    Ok(())
}

#[test]
fn msp_and_energy_match_reference() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(4);
    let backend = backend();
    let logits = gaussian_rows(&mut rng, 25, &[0.5; 10], 3.0);
    let embeddings = tensor(&backend, &unit(&gaussian_rows(&mut rng, 25, &[0.0; 4], 1.0)))?;
    let test = input(embeddings.clone(), Some(tensor(&backend, &logits)?), None);
    let train = input(embeddings, None, None);
    let msp = MspScorer {}.fit(&train)?.score(&test)?;
    assert_all_close(&msp.to_vec_f32()?, &msp_ref(&logits), 1e-5, "msp");
    for t in [1.0, 0.5, 1000.0] {
        let energy = EnergyScorer { temperature: t }.fit(&train)?.score(&test)?;
        assert_all_close(&energy.to_vec_f32()?, &energy_ref(&logits, t), 1e-5, &format!("energy T={t}"));
    }
    Ok(())
}

#[test]
fn missing_inputs_are_errors_not_panics() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(5);
    let backend = backend();
    let rows = tensor(&backend, &unit(&gaussian_rows(&mut rng, 10, &[0.0; 4], 1.0)))?;
    let no_logits = input(rows.clone(), None, None);
    let err = MspScorer {}.fit(&no_logits)?.score(&no_logits).expect_err("msp without logits");
    assert!(err.to_string().contains("logits"), "{err}");
    let err = EnergyScorer::default().fit(&no_logits)?.score(&no_logits).expect_err("energy without logits");
    assert!(err.to_string().contains("logits"), "{err}");
    let err = MahalanobisScorer::default().fit(&no_logits).err().expect("mahalanobis without labels");
    assert!(err.to_string().contains("labels"), "{err}");
    let short_labels = input(rows.clone(), None, Some(label_tensor(&backend, &[0, 1, 0])?));
    assert!(MahalanobisScorer::default().fit(&short_labels).is_err());
    let err = KnnScorer::default().fit(&no_logits).err().expect("k = 50 > 10 rows");
    assert!(err.to_string().contains("scorer.k"), "{err}");
    let fitted = KnnScorer { k: 3, ..KnnScorer::default() }.fit(&no_logits)?;
    let wrong_dim = tensor(&backend, &unit(&gaussian_rows(&mut rng, 2, &[0.0; 5], 1.0)))?;
    assert!(fitted.score(&input(wrong_dim, None, None)).is_err());
    Ok(())
}
