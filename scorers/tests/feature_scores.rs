//! `maxlogit`, `ash`, `scale` and `relation` against hand-computed cases and the f64 references
//! of `common`, plus what every scorer consumes and the errors for missing inputs.

mod common;

use std::sync::Arc;

use common::*;
use hamos_api::{Backend, Consumes, Error, LinearHead, Result, ScoreInput, Scorer, Tensor};
use hamos_scorers::{
    AshScorer, EnergyScorer, KnnScorer, MahalanobisScorer, MaxLogitScorer, MspScorer, OdinScorer,
    RelationScorer, ScaleScorer,
};

/// An input with placeholder embeddings and the given logits, features and head.
fn input(
    backend: &Arc<dyn Backend>,
    logits: Option<&Rows>,
    features: Option<&Rows>,
    head: Option<(&Rows, &[f64])>,
) -> Result<ScoreInput> {
    let m = features.or(logits).map_or(1, Vec::len);
    let head = match head {
        Some((weight, bias)) => Some(LinearHead {
            weight: tensor(backend, weight)?,
            bias: backend.from_f32(&bias.iter().map(|&b| b as f32).collect::<Vec<_>>(), &[bias.len()])?,
        }),
        None => None,
    };
    Ok(ScoreInput {
        embeddings: tensor(backend, &vec![vec![1.0, 0.0]; m])?,
        logits: logits.map(|l| tensor(backend, l)).transpose()?,
        labels: None,
        features: features.map(|f| tensor(backend, f)).transpose()?,
        head,
        inputs: None,
    })
}

fn scores(scorer: &dyn Scorer, train: &ScoreInput, test: &ScoreInput) -> Result<Vec<f32>> {
    scorer.fit(train)?.score(test)?.to_vec_f32()
}

/// Rows of `relu(N(0, 1))`, many exact zeros as in post-ReLU activations.
fn activations(rng: &mut hamos_api::HamosRng, n: usize, w: usize) -> Rows {
    gaussian_rows(rng, n, &vec![0.0; w], 1.0)
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.max(0.0)).collect())
        .collect()
}

#[test]
fn maxlogit_matches_reference() -> Result<()> {
    let backend = backend();
    let hand: Rows = vec![vec![1.0, -2.0, 3.5], vec![-1.0, -0.5, -4.0]];
    let test = input(&backend, Some(&hand), None, None)?;
    assert_eq!(scores(&MaxLogitScorer {}, &test, &test)?, vec![3.5, -0.5]);
    let logits = gaussian_rows(&mut hamos_api::rng_from_seed(10), 30, &[0.3; 9], 4.0);
    let test = input(&backend, Some(&logits), None, None)?;
    assert_all_close(&scores(&MaxLogitScorer {}, &test, &test)?, &maxlogit_ref(&logits), 1e-6, "maxlogit");
    Ok(())
}

#[test]
fn ash_and_scale_match_hand_computed_cases() -> Result<()> {
    let backend = backend();
    // x = [1, 2, 3, 4], percentile 50: k = 2, s1 = 10, s2 = 7. The zero row keeps factor 1.
    let features: Rows = vec![vec![1.0, 2.0, 3.0, 4.0], vec![0.0; 4]];
    let weight: Rows = vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 0.0, 0.0, 1.0]];
    let bias = [0.5, -0.25];
    let test = input(&backend, None, Some(&features), Some((&weight, &bias)))?;
    let e = (10.0f64 / 7.0).exp();
    let lse = |a: f64, b: f64| a.max(b) + (1.0 + (-(a - b).abs()).exp()).ln();
    let zero_row = lse(0.5, -0.25);
    // ASH-S keeps [0, 0, 3, 4] * e: logits [0.5, 4e - 0.25].
    let ash = scores(&AshScorer { percentile: 50.0 }, &test, &test)?;
    assert_all_close(&ash, &[lse(0.5, 4.0 * e - 0.25), zero_row], 1e-6, "ash hand");
    // SCALE keeps every entry: logits [e + 0.5, 4e - 0.25].
    let scale = scores(&ScaleScorer { percentile: 50.0 }, &test, &test)?;
    assert_all_close(&scale, &[lse(e + 0.5, 4.0 * e - 0.25), zero_row], 1e-6, "scale hand");
    Ok(())
}

#[test]
fn ash_and_scale_match_reference_on_random_activations() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(11);
    let backend = backend();
    // w = 10 at 65% prunes round(6.5) = 6 (half to even, as np.round), keeping 4.
    for (w, c, percentile) in [(32, 7, 65.0), (32, 7, 85.0), (10, 3, 65.0), (20, 5, 0.0), (16, 4, 90.0)] {
        let features = activations(&mut rng, 23, w);
        let weight = gaussian_rows(&mut rng, c, &vec![0.0; w], 0.5);
        let bias: Vec<f64> = gaussian_rows(&mut rng, 1, &vec![0.0; c], 1.0).remove(0);
        let test = input(&backend, None, Some(&features), Some((&weight, &bias)))?;
        let what = format!("w={w} c={c} p={percentile}");
        let ash = scores(&AshScorer { percentile }, &test, &test)?;
        let want = shaped_energy_ref(&features, &weight, &bias, percentile, true);
        assert_all_close(&ash, &want, 1e-4, &format!("ash {what}"));
        let scale = scores(&ScaleScorer { percentile }, &test, &test)?;
        let want = shaped_energy_ref(&features, &weight, &bias, percentile, false);
        assert_all_close(&scale, &want, 1e-4, &format!("scale {what}"));
    }
    Ok(())
}

#[test]
fn relation_matches_reference() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(12);
    let backend = backend();
    let (w, c) = (12, 5);
    let train_f = activations(&mut rng, 64, w);
    let train_l = gaussian_rows(&mut rng, 64, &vec![0.0; c], 2.0);
    let test_f = activations(&mut rng, 29, w);
    let test_l = gaussian_rows(&mut rng, 29, &vec![0.0; c], 2.0);
    let train = input(&backend, Some(&train_l), Some(&train_f), None)?;
    let test = input(&backend, Some(&test_l), Some(&test_f), None)?;
    for (pow, threshold, chunk_rows) in [(1, 0.03, 256), (2, 0.03, 7), (3, 0.0, 1), (8, 0.1, 29)] {
        let scorer = RelationScorer { pow, threshold, chunk_rows };
        let got = scores(&scorer, &train, &test)?;
        let want = relation_ref(&train_f, &train_l, &test_f, &test_l, pow as i32, threshold);
        assert_all_close(&got, &want, 1e-4, &format!("relation pow={pow} thres={threshold}"));
    }
    Ok(())
}

#[test]
fn every_scorer_says_what_it_consumes() {
    use Consumes::*;
    let cases: [(&dyn Scorer, &[Consumes], bool); 9] = [
        (&KnnScorer::default(), &[Embeddings], true),
        (&MahalanobisScorer::default(), &[Embeddings], true),
        (&MspScorer {}, &[Logits], false),
        (&EnergyScorer::default(), &[Logits], false),
        (&MaxLogitScorer {}, &[Logits], false),
        (&AshScorer::default(), &[Features, Head], false),
        (&ScaleScorer::default(), &[Features, Head], false),
        (&RelationScorer::default(), &[Features, Logits], true),
        (&OdinScorer::default(), &[InputGradients], false),
    ];
    for (scorer, consumes, fitted) in cases {
        assert_eq!(scorer.consumes(), consumes, "{scorer:?}");
        assert_eq!(scorer.fitted(), fitted, "{scorer:?}");
    }
}

fn message(result: Result<Tensor>) -> String {
    result.err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn missing_or_mismatched_inputs_are_named_errors() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(13);
    let backend = backend();
    let features = activations(&mut rng, 6, 8);
    let logits = gaussian_rows(&mut rng, 6, &[0.0; 3], 1.0);
    let weight = gaussian_rows(&mut rng, 3, &[0.0; 8], 1.0);
    let bias = [0.0; 3];
    let bare = input(&backend, None, None, None)?;
    let no_head = input(&backend, Some(&logits), Some(&features), None)?;
    let full = input(&backend, Some(&logits), Some(&features), Some((&weight, &bias)))?;

    for (scorer, name) in [(&AshScorer::default() as &dyn Scorer, "ash"), (&ScaleScorer::default(), "scale")]
    {
        let fitted = scorer.fit(&bare)?;
        let err = message(fitted.score(&bare));
        assert!(err.contains(&format!("`{name}`")) && err.contains("ScoreInput.features"), "{err}");
        let err = message(fitted.score(&no_head));
        assert!(err.contains(&format!("`{name}`")) && err.contains("ScoreInput.head"), "{err}");
        let narrow = gaussian_rows(&mut rng, 3, &[0.0; 5], 1.0);
        let err = message(fitted.score(&input(&backend, None, Some(&features), Some((&narrow, &bias)))?));
        assert!(err.contains("width"), "{err}");
        assert_eq!(fitted.score(&full)?.dims(), vec![6]);
    }
    let err = message(MaxLogitScorer {}.fit(&bare)?.score(&bare));
    assert!(err.contains("`maxlogit`") && err.contains("logits"), "{err}");

    let relation = RelationScorer::default();
    let err = relation.fit(&bare).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("`relation`") && err.contains("features"), "{err}");
    let only_features = input(&backend, None, Some(&features), None)?;
    let err = relation.fit(&only_features).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("`relation`") && err.contains("logits"), "{err}");
    let fitted = relation.fit(&no_head)?;
    let wider = activations(&mut rng, 6, 9);
    assert!(fitted.score(&input(&backend, Some(&logits), Some(&wider), None)?).is_err());
    let short = logits[..4].to_vec();
    assert!(fitted.score(&input(&backend, Some(&short), Some(&features), None)?).is_err());
    Ok(())
}

#[test]
fn shaping_and_relation_settings_are_validated() -> Result<()> {
    let field = |r: Result<()>| match r {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => format!("{other:?}"),
    };
    for bad in [-1.0, 100.0, f64::NAN] {
        assert_eq!(field(AshScorer { percentile: bad }.validate()), "scorer.percentile");
        assert_eq!(field(ScaleScorer { percentile: bad }.validate()), "scorer.percentile");
    }
    assert_eq!(field(RelationScorer { pow: 0, ..RelationScorer::default() }.validate()), "scorer.pow");
    let err = RelationScorer { threshold: -0.1, ..RelationScorer::default() }.validate();
    assert_eq!(field(err), "scorer.threshold");
    let err = RelationScorer { chunk_rows: 0, ..RelationScorer::default() }.validate();
    assert_eq!(field(err), "scorer.chunk_rows");
    // One feature at 65% rounds to one pruned: nothing left to keep is an error, not NaN.
    let backend = backend();
    let one = input(&backend, None, Some(&vec![vec![1.0]]), Some((&vec![vec![1.0]], &[0.0])))?;
    let err = message(AshScorer::default().fit(&one)?.score(&one));
    assert!(err.contains("scorer.percentile"), "{err}");
    Ok(())
}
