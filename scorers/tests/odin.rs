//! `odin` against an f64 reference on a model whose input gradient has a closed form:
//! `logits = ((x - mean) / std) W^T + b` on flattened images.

#![allow(clippy::unwrap_used)]

mod common;

use std::rc::Rc;

use common::*;
use hamos_api::{Error, InputModel, ModelInputs, Result, ScoreInput, Scorer, Tensor};
use hamos_scorers::OdinScorer;

const MEAN: f64 = 0.3;
const STD: f64 = 0.4;

/// The linear model behind the test, on `[m, 1, h, w]` images in pixel units.
#[derive(Debug)]
struct LinearModel {
    weight: Tensor,
    bias: Tensor,
}

impl InputModel for LinearModel {
    fn logits(&self, images: &Tensor) -> Result<Tensor> {
        let m = images.dims()[0];
        let flat = images.reshape(&[m, images.elem_count() / m])?;
        let normalized = flat.affine(1.0 / STD, -MEAN / STD)?;
        normalized.matmul(&self.weight.t()?)?.add(&self.bias)
    }
}

fn softmax(row: &[f64]) -> Vec<f64> {
    let top = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = row.iter().map(|v| (v - top).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn logits_ref(x: &[f64], weight: &Rows, bias: &[f64]) -> Vec<f64> {
    weight
        .iter()
        .zip(bias)
        .map(|(w, b)| w.iter().zip(x).map(|(w, x)| w * (x - MEAN) / STD).sum::<f64>() + b)
        .collect()
}

/// ODIN in f64: `d CE / d x = W^T (p - e_y) / (T std)`, its sign, the step, the tempered MSP.
fn odin_ref(images: &Rows, weight: &Rows, bias: &[f64], t: f64, eps: f64) -> Vec<f64> {
    images
        .iter()
        .map(|x| {
            let p = softmax(&logits_ref(x, weight, bias).iter().map(|l| l / t).collect::<Vec<_>>());
            let y = (0..p.len()).fold(0, |best, c| if p[c] > p[best] { c } else { best });
            let perturbed: Vec<f64> = (0..x.len())
                .map(|j| {
                    let grad: f64 = (0..p.len()).map(|c| weight[c][j] * (p[c] - f64::from(c == y))).sum();
                    x[j] - eps * if grad >= 0.0 { 1.0 } else { -1.0 }
                })
                .collect();
            let q = softmax(&logits_ref(&perturbed, weight, bias).iter().map(|l| l / t).collect::<Vec<_>>());
            q.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        })
        .collect()
}

struct Case {
    images: Rows,
    input: ScoreInput,
    weight: Rows,
    bias: Vec<f64>,
}

fn case(seed: u64, m: usize, side: usize, classes: usize) -> Result<Case> {
    let backend = backend();
    let mut rng = hamos_api::rng_from_seed(seed);
    let pixels = side * side;
    let images: Rows = gaussian_rows(&mut rng, m, &vec![0.5; pixels], 0.2);
    let weight = gaussian_rows(&mut rng, classes, &vec![0.0; pixels], 0.3);
    let bias: Vec<f64> = gaussian_rows(&mut rng, 1, &vec![0.0; classes], 0.5).remove(0);
    let model = LinearModel {
        weight: tensor(&backend, &weight)?,
        bias: backend.from_f32(&bias.iter().map(|&b| b as f32).collect::<Vec<_>>(), &[classes])?,
    };
    let flat: Vec<f32> = images.iter().flatten().map(|&v| v as f32).collect();
    let mut input = ScoreInput::from_embeddings(tensor(&backend, &unit(&images))?);
    input.inputs =
        Some(ModelInputs { images: backend.from_f32(&flat, &[m, 1, side, side])?, model: Rc::new(model) });
    Ok(Case { images, input, weight, bias })
}

#[test]
fn odin_matches_the_closed_form_gradient_step() -> Result<()> {
    for (seed, t, eps) in [(1, 1000.0, 0.0014), (2, 2.0, 0.05), (3, 1.0, 0.2)] {
        let case = case(seed, 12, 4, 5)?;
        let scorer = OdinScorer { temperature: t, epsilon: eps };
        let got = scorer.fit(&case.input)?.score(&case.input)?.to_vec_f32()?;
        let want = odin_ref(&case.images, &case.weight, &case.bias, t, eps);
        // At T = 1000 the scores differ from 1/c in the fifth digit: compare relative to 1/c.
        assert_all_close(&got, &want, 2e-6, &format!("odin T={t} eps={eps}"));
    }
    Ok(())
}

#[test]
fn the_perturbation_raises_the_tempered_confidence() -> Result<()> {
    let case = case(4, 20, 4, 3)?;
    let plain = OdinScorer { temperature: 5.0, epsilon: 0.0 }.fit(&case.input)?.score(&case.input)?;
    let moved = OdinScorer { temperature: 5.0, epsilon: 0.01 }.fit(&case.input)?.score(&case.input)?;
    for (p, m) in plain.to_vec_f32()?.iter().zip(moved.to_vec_f32()?) {
        assert!(m > *p, "a step against the cross-entropy must raise the confidence: {p} -> {m}");
    }
    Ok(())
}

#[test]
fn odin_without_images_or_with_bad_settings_is_an_error() -> Result<()> {
    let case = case(5, 3, 2, 2)?;
    let bare = ScoreInput { inputs: None, ..case.input.clone() };
    let err = OdinScorer::default().fit(&bare)?.score(&bare).unwrap_err().to_string();
    assert!(err.contains("odin") && err.contains("ScoreInput.inputs"), "{err}");
    for bad in
        [OdinScorer { temperature: 0.0, epsilon: 0.001 }, OdinScorer { temperature: 1.0, epsilon: -1.0 }]
    {
        assert!(matches!(bad.validate(), Err(Error::InvalidConfig { .. })), "{bad:?}");
    }
    Ok(())
}
