//! The OOD-term variants beyond Eqn 7 as printed: the authors' released term and outliers as
//! extra compactness negatives, against naive f64 references, finite differences and their
//! defining properties (minimum at equal similarity; the outliers' own gradient path).

mod common;

use common::*;
use hamos_api::Result;
use hamos_losses::{outlier_negative_loss, released_ood_loss, RELEASED_BASE_TEMPERATURE};

/// `(tau / 0.07) mean_i mean_j -log softmax(-z_i . mu / tau)_j`, in f64.
fn released_ref(z: &Rows, prototypes: &Rows, tau: f64) -> f64 {
    let c = prototypes.len() as f64;
    let mut total = 0.0;
    for row in z {
        let negated: Vec<f64> = prototypes.iter().map(|p| -dot(row, p) / tau).collect();
        let max = negated.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + negated.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        total += negated.iter().map(|v| lse - v).sum::<f64>() / c;
    }
    tau / 0.07 * total / z.len() as f64
}

/// `mean_i [log(sum_j e^{z.mu_j/tau} + sum_k e^{z.o_k/tau}) - log(sum_j e^{z.mu_j/tau})]`.
fn negatives_ref(z: &Rows, prototypes: &Rows, outliers: &Rows, tau: f64) -> f64 {
    let mut total = 0.0;
    for row in z {
        let to_p: f64 = prototypes.iter().map(|p| (dot(row, p) / tau).exp()).sum();
        let to_o: f64 = outliers.iter().map(|o| (dot(row, o) / tau).exp()).sum();
        total += ((to_p + to_o) / to_p).ln();
    }
    total / z.len() as f64
}

fn raw_rows(rng: &mut hamos_api::HamosRng, n: usize, d: usize) -> Rows {
    hamos_api::backend::randn_host(n * d, 0.0, 1.0, rng)
        .chunks(d)
        .map(|r| r.iter().map(|&v| f64::from(v)).collect())
        .collect()
}

#[test]
fn released_term_matches_reference_and_is_minimal_at_equal_similarity() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(31);
    let backend = backend();
    assert!((RELEASED_BASE_TEMPERATURE - 0.07).abs() < 1e-15);
    for (n, c, tau) in [(16, 4, 0.1), (40, 10, 0.1), (3, 2, 0.5)] {
        let (z, p) = (unit_rows(&mut rng, n, 8), unit_rows(&mut rng, c, 8));
        let got = scalar(&released_ood_loss(&tensor(&backend, &z)?, &tensor(&backend, &p)?, tau)?)?;
        assert_close(got, released_ref(&z, &p, tau), 1e-4, "released term");
        // Cross-entropy from uniform is at least log C, times the authors' rescaling.
        assert!(got >= tau / 0.07 * (c as f64).ln() - 1e-4, "{got} below its minimum");
    }
    // An embedding orthogonal to every prototype has equal similarities: the minimum.
    let p = vec![vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]];
    let z = vec![vec![0.0, 0.0, 1.0]];
    let at_min = scalar(&released_ood_loss(&tensor(&backend, &z)?, &tensor(&backend, &p)?, 0.1)?)?;
    assert_close(at_min, 0.1 / 0.07 * 2f64.ln(), 1e-6, "released term at equal similarity");
    Ok(())
}

#[test]
fn released_term_gradient_matches_finite_differences() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(32);
    let backend = backend();
    let (x, p) = (raw_rows(&mut rng, 6, 4), unit_rows(&mut rng, 3, 4));
    let var = backend.variable(&tensor(&backend, &x)?)?;
    let value = released_ood_loss(&var.l2_normalize(1)?, &tensor(&backend, &p)?, 0.2)?;
    let got = value.gradients(&[&var])?[0].to_vec_f32()?;
    let want = finite_differences(&x, |x| released_ref(&normalize_rows(x), &p, 0.2));
    assert_grad_close(&got, &want, 1e-2, "released term");
    Ok(())
}

#[test]
fn outlier_negatives_match_reference_and_vanish_without_pull() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(33);
    let backend = backend();
    for (n, c, m, tau) in [(16, 4, 12, 0.1), (30, 10, 40, 0.1), (2, 2, 1, 0.5)] {
        let (z, p, o) = (unit_rows(&mut rng, n, 8), unit_rows(&mut rng, c, 8), unit_rows(&mut rng, m, 8));
        let got = scalar(&outlier_negative_loss(
            &tensor(&backend, &z)?,
            &tensor(&backend, &p)?,
            &tensor(&backend, &o)?,
            tau,
        )?)?;
        let want = negatives_ref(&z, &p, &o, tau);
        assert_close(got, want, 1e-4, "outlier negatives");
        assert!(want > 0.0);
    }
    // Far-away outliers (antipodal to an embedding sitting on its prototype) add almost nothing.
    let (z, p, o) = (vec![vec![1.0, 0.0]], vec![vec![1.0, 0.0], vec![0.0, 1.0]], vec![vec![-1.0, 0.0]]);
    let small = scalar(&outlier_negative_loss(
        &tensor(&backend, &z)?,
        &tensor(&backend, &p)?,
        &tensor(&backend, &o)?,
        0.1,
    )?)?;
    assert!(small < 1e-8, "{small}");
    let bad = unit_rows(&mut rng, 3, 4);
    let (z, p) = (unit_rows(&mut rng, 3, 8), unit_rows(&mut rng, 2, 8));
    let mismatched =
        outlier_negative_loss(&tensor(&backend, &z)?, &tensor(&backend, &p)?, &tensor(&backend, &bad)?, 0.1);
    assert!(mismatched.unwrap_err().to_string().contains("outliers"));
    Ok(())
}

#[test]
fn each_outlier_has_its_own_gradient_path() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(34);
    let backend = backend();
    let (x, p) = (raw_rows(&mut rng, 6, 4), unit_rows(&mut rng, 3, 4));
    let mut o = unit_rows(&mut rng, 5, 4);
    let gradient = |outliers: &Rows| -> Result<Vec<f32>> {
        let var = backend.variable(&tensor(&backend, &x)?)?;
        let value = outlier_negative_loss(
            &var.l2_normalize(1)?,
            &tensor(&backend, &p)?,
            &tensor(&backend, outliers)?,
            0.2,
        )?;
        value.gradients(&[&var])?.remove(0).to_vec_f32()
    };
    let got = gradient(&o)?;
    let want = finite_differences(&x, |x| negatives_ref(&normalize_rows(x), &p, &o, 0.2));
    assert_grad_close(&got, &want, 1e-2, "outlier negatives");
    // Moving one outlier (only the third) changes the embeddings' gradient.
    o[2] = normalize(&[o[2][1], -o[2][0], o[2][3], o[2][2]]);
    let moved = gradient(&o)?;
    let change = got.iter().zip(&moved).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(change > 1e-4, "moving one outlier changed the gradient by only {change}");
    Ok(())
}
