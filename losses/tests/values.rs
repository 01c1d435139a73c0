//! Every loss against the f64 references of `common`, on random unit embeddings (candle CPU).

mod common;

use common::*;
use hamos_api::{ContrastiveBatch, ContrastiveLoss, Result};
use hamos_losses::cider::update_prototypes;
use hamos_losses::{ood_discernment_loss, CeOnly, Cider, SimClr, SupCon};

fn batch(z: &Rows, labels: &[usize], prototypes: &Rows) -> Result<ContrastiveBatch> {
    let backend = backend();
    Ok(ContrastiveBatch {
        embeddings: tensor(&backend, z)?,
        labels: label_tensor(&backend, labels)?,
        prototypes: tensor(&backend, prototypes)?,
    })
}

#[test]
fn cider_matches_reference() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(1);
    for (b, d, c) in [(16, 8, 4), (24, 16, 10), (6, 3, 2)] {
        let (z, p) = (unit_rows(&mut rng, b, d), unit_rows(&mut rng, c, d));
        let labels = labels(&mut rng, b, c);
        for loss in [
            Cider::default(),
            Cider { prototype_momentum: 1.0, ..Cider::default() },
            Cider { prototype_momentum: 0.0, temperature: 0.5, w_comp: 2.0, w_dis: 0.3 },
        ] {
            let got = scalar(&loss.loss(&batch(&z, &labels, &p)?)?)?;
            let want = cider_ref(
                &z,
                &labels,
                &p,
                loss.temperature,
                loss.prototype_momentum,
                loss.w_comp,
                loss.w_dis,
            );
            assert_close(got, want, 1e-4, &format!("cider {loss:?} b={b}"));
        }
    }
    Ok(())
}

#[test]
fn cider_terms_and_prototype_update_match_reference() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(2);
    let (z, p) = (unit_rows(&mut rng, 20, 6), unit_rows(&mut rng, 5, 6));
    // Class 4 is absent: its prototype must stay as given.
    let labels: Vec<usize> = (0..20).map(|i| (i * 7) % 4).collect();
    let cider = Cider::default();
    let (terms, updated) = cider.terms(&batch(&z, &labels, &p)?)?;
    let want = ema_ref(&p, &z, &labels, cider.prototype_momentum);
    let got = updated.to_rows_f32()?;
    for (g, w) in got.iter().zip(&want) {
        for (a, b) in g.iter().zip(w) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "prototype {a} vs {b}");
        }
    }
    assert_eq!(got[4].iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), p[4]);
    assert_close(scalar(&terms.comp)?, comp_ref(&z, &labels, &want, cider.temperature), 1e-4, "comp");
    assert_close(scalar(&terms.dis)?, dis_ref(&want, cider.temperature), 1e-4, "dis");

    let backend = backend();
    let direct = update_prototypes(
        &tensor(&backend, &p)?,
        &tensor(&backend, &z)?,
        &label_tensor(&backend, &labels)?,
        0.95,
    )?;
    assert_eq!(direct.to_rows_f32()?, got);
    Ok(())
}

#[test]
fn cider_rejects_bad_labels_and_shapes() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(3);
    let (z, p) = (unit_rows(&mut rng, 4, 3), unit_rows(&mut rng, 2, 3));
    assert!(Cider::default().loss(&batch(&z, &[0, 1, 2, 0], &p)?).is_err(), "label 2 with 2 prototypes");
    assert!(Cider::default().loss(&batch(&z, &[0, 1, 1], &p)?).is_err(), "3 labels for 4 rows");
    let one = unit_rows(&mut rng, 1, 3);
    assert!(Cider::default().loss(&batch(&z, &[0, 0, 0, 0], &one)?).is_err(), "one class has no dispersion");
    Ok(())
}

#[test]
fn supcon_matches_reference_and_skips_lonely_anchors() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(4);
    let unused = unit_rows(&mut rng, 3, 8);
    for (b, c) in [(16, 4), (32, 10), (9, 6)] {
        let z = unit_rows(&mut rng, b, 8);
        // The last row gets a label nobody else has: it must be skipped, not NaN.
        let mut labels = labels(&mut rng, b, c);
        labels[b - 1] = c;
        for loss in [
            SupCon::default(),
            SupCon { temperature: 0.07, base_temperature: 0.07 },
            SupCon { temperature: 0.5, base_temperature: 0.1 },
        ] {
            let got = scalar(&loss.loss(&batch(&z, &labels, &unused)?)?)?;
            let want = supcon_ref(&z, &labels, loss.temperature, loss.base_temperature);
            assert!(got.is_finite());
            assert_close(got, want, 1e-4, &format!("supcon {loss:?} b={b}"));
        }
    }
    // No positive pair at all: zero, not NaN.
    let z = unit_rows(&mut rng, 5, 8);
    let got = scalar(&SupCon::default().loss(&batch(&z, &[0, 1, 2, 3, 4], &unused)?)?)?;
    assert_eq!(got, 0.0);
    Ok(())
}

#[test]
fn simclr_matches_reference_and_rejects_odd_batches() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(5);
    let unused = unit_rows(&mut rng, 2, 8);
    for b in [2, 8, 30] {
        let z = unit_rows(&mut rng, b, 8);
        let labels = vec![0; b];
        for loss in [SimClr::default(), SimClr { temperature: 0.1 }] {
            let got = scalar(&loss.loss(&batch(&z, &labels, &unused)?)?)?;
            assert_close(got, simclr_ref(&z, loss.temperature), 1e-4, &format!("simclr b={b}"));
        }
    }
    let z = unit_rows(&mut rng, 7, 8);
    let err = SimClr::default().loss(&batch(&z, &[0; 7], &unused)?).expect_err("odd batch");
    assert!(err.to_string().contains("odd"), "{err}");
    Ok(())
}

#[test]
fn ce_only_is_a_differentiable_zero_on_the_batch_backend() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(6);
    let backend = backend();
    let x = backend.variable(&tensor(&backend, &unit_rows(&mut rng, 6, 4))?)?;
    let batch = ContrastiveBatch {
        embeddings: x.l2_normalize(1)?,
        labels: label_tensor(&backend, &[0, 1, 0, 1, 0, 1])?,
        prototypes: tensor(&backend, &unit_rows(&mut rng, 2, 4))?,
    };
    let loss = CeOnly {}.loss(&batch)?;
    assert_eq!(loss.dims(), vec![1]);
    assert_eq!(loss.location(), x.location());
    assert_eq!(loss.to_scalar_f32()?, 0.0);
    let grad = loss.gradients(&[&x])?;
    assert!(grad[0].to_vec_f32()?.iter().all(|&g| g == 0.0));
    Ok(())
}

#[test]
fn ood_discernment_matches_eqn_7() -> Result<()> {
    let mut rng = hamos_api::rng_from_seed(7);
    let backend = backend();
    for (m, c, tau) in [(12, 4, 0.5), (40, 10, 0.1), (1, 2, 2.0)] {
        let (o, p) = (unit_rows(&mut rng, m, 8), unit_rows(&mut rng, c, 8));
        let got = scalar(&ood_discernment_loss(&tensor(&backend, &o)?, &tensor(&backend, &p)?, tau)?)?;
        let want = ood_ref(&o, &p, tau);
        assert_close(got, want, 1e-4, "eqn 7");
        // Mean log-posterior over classes is at most -log C (reached at uniform posteriors).
        assert!(want <= -(c as f64).ln() + 1e-12);
    }
    let (o, p) = (unit_rows(&mut rng, 3, 8), unit_rows(&mut rng, 2, 4));
    assert!(ood_discernment_loss(&tensor(&backend, &o)?, &tensor(&backend, &p)?, 0.5).is_err());
    let p = unit_rows(&mut rng, 2, 8);
    assert!(ood_discernment_loss(&tensor(&backend, &o)?, &tensor(&backend, &p)?, 0.0).is_err());
    Ok(())
}
