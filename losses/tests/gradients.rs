//! Autograd of the losses (through `l2_normalize` of a raw variable) against central finite
//! differences of the f64 references.

mod common;

use common::*;
use hamos_api::{ContrastiveBatch, ContrastiveLoss, Result, Tensor};
use hamos_losses::{ood_discernment_loss, Cider, SimClr, SupCon};

/// Raw (unnormalized) rows and the gradient of `loss(l2_normalize(x))` with respect to them.
fn autograd(x: &Rows, labels: &[usize], prototypes: &Rows, loss: &dyn ContrastiveLoss) -> Result<Vec<f32>> {
    let backend = backend();
    let var = backend.variable(&tensor(&backend, x)?)?;
    let batch = ContrastiveBatch {
        embeddings: var.l2_normalize(1)?,
        labels: label_tensor(&backend, labels)?,
        prototypes: tensor(&backend, prototypes)?,
    };
    let value: Tensor = loss.loss(&batch)?;
    value.gradients(&[&var])?[0].to_vec_f32()
}

fn raw_rows(rng: &mut hamos_api::HamosRng, n: usize, d: usize) -> Rows {
    // Unit rows scaled by varied norms, so the normalization's Jacobian matters.
    unit_rows(rng, n, d)
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.iter().map(|v| v * (0.5 + 0.25 * i as f64)).collect())
        .collect()
}

#[test]
fn cider_gradient_matches_finite_differences() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(11);
    let (b, d, c) = (12, 5, 3);
    let x = raw_rows(&mut rng, b, d);
    let p = unit_rows(&mut rng, c, d);
    let labels = labels(&mut rng, b, c);
    for cider in
        [Cider::default(), Cider { prototype_momentum: 0.5, w_comp: 1.0, w_dis: 2.0, temperature: 0.2 }]
    {
        let got = autograd(&x, &labels, &p, &cider)?;
        // The compactness sees the updated prototypes detached: hold them at their value at x.
        let frozen = ema_ref(&p, &normalize_rows(&x), &labels, cider.prototype_momentum);
        let want = finite_differences(&x, |x| {
            let z = normalize_rows(x);
            let updated = ema_ref(&p, &z, &labels, cider.prototype_momentum);
            cider.w_comp * comp_ref(&z, &labels, &frozen, cider.temperature)
                + cider.w_dis * dis_ref(&updated, cider.temperature)
        });
        assert_grad_close(&got, &want, 1e-2, &format!("cider {cider:?}"));
    }
    Ok(())
}

#[test]
fn cider_dispersion_carries_gradient_through_the_prototype_update() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(12);
    let x = raw_rows(&mut rng, 8, 4);
    let p = unit_rows(&mut rng, 4, 4);
    let labels = [0, 1, 2, 3, 0, 1, 2, 3];
    let only_dis = Cider { w_comp: 0.0, ..Cider::default() };
    let got = autograd(&x, &labels, &p, &only_dis)?;
    assert!(got.iter().any(|g| g.abs() > 1e-4), "dispersion has no gradient: {got:?}");
    let frozen = Cider { w_comp: 0.0, prototype_momentum: 1.0, ..Cider::default() };
    assert!(autograd(&x, &labels, &p, &frozen)?.iter().all(|&g| g == 0.0));
    Ok(())
}

#[test]
fn supcon_gradient_matches_finite_differences() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(13);
    let (b, d) = (10, 4);
    let x = raw_rows(&mut rng, b, d);
    let mut labels = labels(&mut rng, b, 3);
    labels[b - 1] = 7; // a lonely anchor
    let p = unit_rows(&mut rng, 2, d);
    for loss in [SupCon::default(), SupCon { temperature: 0.3, base_temperature: 0.07 }] {
        let got = autograd(&x, &labels, &p, &loss)?;
        let want = finite_differences(&x, |x| {
            supcon_ref(&normalize_rows(x), &labels, loss.temperature, loss.base_temperature)
        });
        assert_grad_close(&got, &want, 1e-2, &format!("supcon {loss:?}"));
    }
    Ok(())
}

#[test]
fn simclr_gradient_matches_finite_differences() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(14);
    let x = raw_rows(&mut rng, 8, 4);
    let p = unit_rows(&mut rng, 2, 4);
    let loss = SimClr::default();
    let got = autograd(&x, &[0; 8], &p, &loss)?;
    let want = finite_differences(&x, |x| simclr_ref(&normalize_rows(x), loss.temperature));
    assert_grad_close(&got, &want, 1e-2, "simclr");
    Ok(())
}

#[test]
fn ood_discernment_gradient_matches_finite_differences() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(15);
    let backend = backend();
    let x = raw_rows(&mut rng, 6, 4);
    let p = unit_rows(&mut rng, 3, 4);
    let var = backend.variable(&tensor(&backend, &x)?)?;
    let value = ood_discernment_loss(&var.l2_normalize(1)?, &tensor(&backend, &p)?, 0.5)?;
    let got = value.gradients(&[&var])?[0].to_vec_f32()?;
    let want = finite_differences(&x, |x| ood_ref(&normalize_rows(x), &p, 0.5));
    assert_grad_close(&got, &want, 1e-2, "eqn 7");
    Ok(())
}
