//! The detection metrics, accuracy and Eqn 14 against hand-computed cases, values printed by
//! scikit-learn 1.9.1 (as OpenOOD calls it), and brute-force f64 references on random inputs.
//! (While written, the implementation also matched scikit-learn on 300 random tied cases; the
//! fixed cases below keep a few of those checks without needing Python.)

#[path = "../src/eval/metrics.rs"]
mod metrics;

use metrics::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-12, "{what}: got {got}, want {want}");
}

/// Brute force: every (ID, OOD) pair, ties counting 1/2.
fn auroc_ref(id: &[f64], ood: &[f64]) -> f64 {
    let mut wins = 0.0;
    for a in id {
        for b in ood {
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (id.len() * ood.len()) as f64
}

/// Brute force: the largest ID value `t` with `#(id >= t) >= 0.95 n`, then `#(ood >= t) / m`.
fn fpr95_ref(id: &[f64], ood: &[f64]) -> f64 {
    let t = id
        .iter()
        .copied()
        .filter(|&t| id.iter().filter(|&&s| s >= t).count() * 100 >= 95 * id.len())
        .fold(f64::NEG_INFINITY, f64::max);
    ood.iter().filter(|&&s| s >= t).count() as f64 / ood.len() as f64
}

/// Brute force: precision and recall recounted at every distinct threshold, high to low.
fn ap_ref(pos: &[f64], neg: &[f64]) -> f64 {
    let mut thresholds: Vec<f64> = pos.iter().chain(neg).copied().collect();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let (mut ap, mut last_recall) = (0.0, 0.0);
    for t in thresholds {
        let tp = pos.iter().filter(|&&s| s >= t).count() as f64;
        let fp = neg.iter().filter(|&&s| s >= t).count() as f64;
        let recall = tp / pos.len() as f64;
        if tp > 0.0 {
            ap += (recall - last_recall) * tp / (tp + fp);
        }
        last_recall = recall;
    }
    ap
}

/// Brute force of OpenOOD's FPR@95: ROC points `(#ID <= x, #OOD <= x)` recounted at every
/// distinct score `x` (ascending), a point kept when the step into it differs from the step out
/// of it (or it is an end), `(0, 0)` prepended, then the first point with OOD recall >= 0.95.
fn fpr95_openood_ref(id: &[f64], ood: &[f64]) -> f64 {
    let mut xs: Vec<f64> = id.iter().chain(ood).copied().collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let count = |v: &[f64], x: f64| v.iter().filter(|&&s| s <= x).count() as f64;
    let points: Vec<(f64, f64)> = xs.iter().map(|&x| (count(id, x), count(ood, x))).collect();
    let step = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0, b.1 - a.1);
    let kept = (0..points.len()).filter(|&i| {
        i == 0 || i + 1 == points.len() || step(points[i - 1], points[i]) != step(points[i], points[i + 1])
    });
    let first = std::iter::once((0.0, 0.0))
        .chain(kept.map(|i| points[i]))
        .find(|p| p.1 / ood.len() as f64 >= 0.95)
        .expect("the last point has recall 1");
    first.0 / id.len() as f64
}

#[test]
fn hand_computed_case() {
    let (id, ood) = ([3.0, 2.0, 1.0], [2.0, 0.0]);
    // Pairs: (3,2) (3,0) (2,2)=1/2 (2,0) (1,2)=0 (1,0): 4.5 of 6.
    close(auroc(&id, &ood).unwrap(), 4.5 / 6.0, "auroc");
    // ceil(0.95 * 3) = 3: t = 1, OOD >= 1 is {2}.
    close(fpr_at_95_tpr(&id, &ood).unwrap(), 0.5, "fpr95");
    // Thresholds 3, 2, 1: P = 1, 2/3, 3/4, each adding recall 1/3.
    close(aupr_in(&id, &ood).unwrap(), 1.0 / 3.0 + 2.0 / 9.0 + 1.0 / 4.0, "aupr_in");
    // OOD positive on negated scores: thresholds 0, -1, -2: P = 1 (R 1/2), -, 2/4 (R 1).
    close(aupr_out(&id, &ood).unwrap(), 0.5 + 0.25, "aupr_out");
    // ROC points (fps, tps) over scores 0, 1, 2, 3: (0,1) (1,1) (2,2) (3,2); tpr 1 first at
    // (2, 2): 2 of 3 ID samples flagged. scikit-learn gives 0.6666666666666666.
    close(fpr95_openood(&id, &ood).unwrap(), 2.0 / 3.0, "fpr95_openood");
    let all = OodMetrics::compute(&id, &ood).unwrap();
    assert_eq!((all.auroc, all.fpr95), (auroc(&id, &ood).unwrap(), 0.5));
}

#[test]
fn perfect_reversed_and_constant_scores() {
    let (high, low) = ([5.0, 6.0, 7.0], [1.0, 2.0]);
    let perfect = OodMetrics::compute(&high, &low).unwrap();
    assert_eq!(
        perfect,
        OodMetrics { fpr95: 0.0, auroc: 1.0, aupr_in: 1.0, aupr_out: 1.0, fpr95_openood: 0.0 }
    );
    let reversed = OodMetrics::compute(&low, &high).unwrap();
    assert_eq!((reversed.fpr95, reversed.auroc, reversed.fpr95_openood), (1.0, 0.0, 1.0));
    close(reversed.aupr_in, ap_ref(&low, &high), "reversed aupr_in");
    let constant = OodMetrics::compute(&[0.3; 4], &[0.3; 6]).unwrap();
    assert_eq!((constant.fpr95, constant.auroc, constant.fpr95_openood), (1.0, 0.5, 1.0));
    close(constant.aupr_in, 0.4, "constant aupr_in = ID share");
    close(constant.aupr_out, 0.6, "constant aupr_out = OOD share");
    // -0.0 and 0.0 are one score; infinities are ordinary extremes.
    assert_eq!(auroc(&[0.0], &[-0.0]).unwrap(), 0.5);
    assert_eq!(auroc(&[f64::INFINITY], &[f64::NEG_INFINITY, 1e300]).unwrap(), 1.0);
}

#[test]
fn fpr95_at_exact_boundaries() {
    // 20 ID scores 1..=20: ceil(19) = 19, t = 2 (19 of 20 are >= 2, exactly 95%).
    let id: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(fpr_at_95_tpr(&id, &[1.5, 2.0, 2.5, 0.0]).unwrap(), 0.5);
    assert_eq!(fpr_at_95_tpr(&id, &[1.99]).unwrap(), 0.0);
    // 21 scores: 0.95 * 21 = 19.95 -> 20, t = 2; 100 scores: 95 -> t = 6.
    let id21: Vec<f64> = (1..=21).map(f64::from).collect();
    assert_eq!(fpr_at_95_tpr(&id21, &[2.0]).unwrap(), 1.0);
    let id100: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(fpr_at_95_tpr(&id100, &[6.0, 5.9]).unwrap(), 0.5);
    // Ties at the threshold: with 19 copies of 1 and one 0, t = 1.
    let tied: Vec<f64> = [1.0; 19].into_iter().chain([0.0]).collect();
    assert_eq!(fpr_at_95_tpr(&tied, &[0.5, 1.0]).unwrap(), 0.5);
    for (id, ood) in [(&id, vec![3.0, -1.0]), (&id21, vec![2.0]), (&tied, vec![1.0, 0.0])] {
        assert_eq!(fpr_at_95_tpr(id, &ood).unwrap(), fpr95_ref(id, &ood));
    }
}

#[test]
fn openood_variant_matches_scikit_learn_values() {
    // (ID, OOD, fpr95_openood, auroc, aupr_in, aupr_out) as printed by scikit-learn 1.9.1 for
    // roc_curve(ood, -conf) / roc_auc_score / average_precision_score.
    let cases: [(&[i32], &[i32], [f64; 4]); 3] = [
        (
            &[5, 3, 4, 5, 3, 4, 5, 1, 0, 1, 1, 5, 5, 0, 2, 4, 0, 4, 0, 2, 4, 1, 2, 1, 4],
            &[-1, 3, 0, 0, 1, 1, 1, 1, 3, 2, 2, 2, 1, 0, 3, 0, -1, 3, -2, 3],
            [0.56, 0.726, 0.7965452847805788, 0.6505220269926153],
        ),
        (
            &[
                1, 0, 0, 1, 0, 0, 1, 2, 1, 2, 2, 2, 1, 1, 1, 0, 1, 1, 0, 2, 0, 0, 0, 2, 2, 2, 0, 2, 1, 1, 0,
                1, 2, 1, 0, 1, 0, 2, 2, 0,
            ],
            &[
                1, 2, 2, 2, 1, 0, 2, 1, 0, 0, 1, 2, 1, 1, 2, 2, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 2, 1, 1,
                1, 2,
            ],
            [1.0, 0.4712121212121212, 0.5416407658953992, 0.4352181649815523],
        ),
        (
            &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2],
            &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],
            [0.5, 0.7625, 0.7564102564102564, 0.6833333333333333],
        ),
    ];
    for (i, (id, ood, want)) in cases.iter().enumerate() {
        let id: Vec<f64> = id.iter().map(|&v| f64::from(v)).collect();
        let ood: Vec<f64> = ood.iter().map(|&v| f64::from(v)).collect();
        let m = OodMetrics::compute(&id, &ood).unwrap();
        let got = [m.fpr95_openood, m.auroc, m.aupr_in, m.aupr_out];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "case {i}: got {got:?}, want {want:?}");
        }
    }
    // 20 (ID, OOD) pairs tied at 20 distinct scores: the ROC points are collinear, so
    // scikit-learn drops all but the ends and the first point with TPR >= 0.95 is (1, 1).
    let s: Vec<f64> = (0..20).map(f64::from).collect();
    assert_eq!(fpr95_openood(&s, &s).unwrap(), 1.0);
}

#[test]
fn random_scores_with_ties_match_brute_force() {
    let mut rng = StdRng::seed_from_u64(3);
    for round in 0..200 {
        let (n, m) = (rng.random_range(1..60), rng.random_range(1..60));
        let levels = rng.random_range(1..12);
        let mut draw = |shift: i32| -> f64 { f64::from(rng.random_range(0..levels) + shift) * 0.25 };
        let id: Vec<f64> = (0..n).map(|_| draw(1)).collect();
        let ood: Vec<f64> = (0..m).map(|_| draw(0)).collect();
        let got = OodMetrics::compute(&id, &ood).unwrap();
        let what = format!("round {round}");
        close(got.auroc, auroc_ref(&id, &ood), &format!("{what} auroc"));
        assert_eq!(got.fpr95, fpr95_ref(&id, &ood), "{what} fpr95");
        close(got.aupr_in, ap_ref(&id, &ood), &format!("{what} aupr_in"));
        let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
        close(got.aupr_out, ap_ref(&neg(&ood), &neg(&id)), &format!("{what} aupr_out"));
        assert_eq!(got.fpr95_openood, fpr95_openood_ref(&id, &ood), "{what} fpr95_openood");
    }
}

#[test]
fn empty_and_nan_are_named_errors() {
    assert_eq!(auroc(&[], &[1.0]), Err(MetricsError::Empty { what: "ID scores" }));
    assert_eq!(fpr_at_95_tpr(&[1.0], &[]), Err(MetricsError::Empty { what: "OOD scores" }));
    let err = OodMetrics::compute(&[1.0, f64::NAN, 2.0, f64::NAN], &[0.0]).unwrap_err();
    assert_eq!(err, MetricsError::NaN { what: "ID scores", count: 2, first: 1 });
    assert!(err.to_string().contains("ID scores contain 2 NaN"), "{err}");
    let err = aupr_out(&[1.0], &[f64::NAN]).unwrap_err();
    assert_eq!(err, MetricsError::NaN { what: "OOD scores", count: 1, first: 0 });
    let api: hamos_api::Error = err.into();
    assert!(api.to_string().contains("OOD scores"), "{api}");
}

#[test]
fn accuracy_takes_the_first_maximum() {
    let logits = [vec![0.1f32, 0.9, 0.3], vec![2.0, 2.0, 1.0], vec![-1.0, -3.0, -0.5], vec![0.0, 1.0, 1.0]];
    // Predictions 1, 0 (tie: first), 2, 1 (tie: first) against labels 1, 1, 2, 2.
    close(accuracy(&logits, &[1, 1, 2, 2]).unwrap(), 0.5, "accuracy");
    assert!(matches!(accuracy(&logits, &[1, 1, 2]), Err(MetricsError::Invalid(_))));
    assert!(matches!(accuracy(&logits, &[1, 1, 2, 3]), Err(MetricsError::Invalid(_))));
    assert!(matches!(accuracy(&logits, &[1, 1, 2, -1]), Err(MetricsError::Invalid(_))));
    assert!(matches!(accuracy(&[vec![f64::NAN, 1.0]], &[0]), Err(MetricsError::Invalid(_))));
    assert!(matches!(accuracy::<Vec<f64>, f64>(&[], &[]), Err(MetricsError::Empty { .. })));
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn eqn14_hand_computed_case() {
    // Orthogonal prototypes e1, e2 in 3-d: dispersion cos 0 (90 degrees).
    let id = [vec![1.0, 0.0, 0.0], vec![0.0, 2.0, 0.0], vec![1.0, 1.0, 0.0]];
    let labels = [0, 1, 1];
    let protos = class_prototypes(&id, &labels).unwrap();
    let s = std::f64::consts::FRAC_1_SQRT_2;
    // Class 1 mean of (0,1,0) and (s,s,0), normalized.
    let mu1 = unit(&[s / 2.0, (1.0 + s) / 2.0, 0.0]);
    assert!(protos[1].iter().zip(&mu1).all(|(a, b)| (a - b).abs() < 1e-15), "{protos:?}");
    let ood = [vec![0.0, 0.0, 1.0], vec![1.0, 0.0, 1.0]];
    let m =
        HypersphereMetrics::compute(&[vec![1.0, 0.0, 0.0], vec![0.0, 1.0, 0.0]], &id, &labels, &ood).unwrap();
    close(m.cos_separation, (0.0 + s) / 2.0, "separation");
    close(m.separation_deg, (s / 2.0).acos().to_degrees(), "separation degrees");
    close(m.cos_dispersion, 0.0, "dispersion");
    close(m.dispersion_deg, 90.0, "dispersion degrees");
    close(m.cos_compactness, (1.0 + 1.0 + s) / 3.0, "compactness");
    assert!(HypersphereMetrics::compute(&[vec![1.0, 0.0]], &id, &labels, &ood).is_err(), "C = 1");
    assert!(class_prototypes(&id, &[0, 2, 2]).is_err(), "class 1 empty");
    assert!(class_prototypes(&[vec![0.0, 0.0, 0.0]], &[0]).is_err(), "zero row");
    assert!(class_prototypes(&id, &[0, 1]).is_err(), "length mismatch");
}

#[test]
fn eqn14_matches_brute_force_on_random_embeddings() {
    let mut rng = StdRng::seed_from_u64(4);
    let (d, c): (usize, i64) = (6, 4);
    let mut gauss = |n: usize| -> Vec<Vec<f64>> {
        (0..n).map(|_| unit(&(0..d).map(|_| rng.random::<f64>() - 0.5).collect::<Vec<_>>())).collect()
    };
    let (train, id, ood) = (gauss(80), gauss(50), gauss(30));
    let train_labels: Vec<i64> = (0..80).map(|i| i % c).collect();
    let id_labels: Vec<i64> = (0..50).map(|i| (i * 7) % c).collect();
    let protos = class_prototypes(&train, &train_labels).unwrap();
    let mu: Vec<Vec<f64>> = (0..c)
        .map(|k| {
            let rows: Vec<&Vec<f64>> =
                train.iter().zip(&train_labels).filter(|(_, &l)| l == k).map(|(r, _)| r).collect();
            unit(
                &(0..d)
                    .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    for (a, b) in protos.iter().flatten().zip(mu.iter().flatten()) {
        assert!((a - b).abs() < 1e-12);
    }
    let m = HypersphereMetrics::compute(&protos, &id, &id_labels, &ood).unwrap();
    let mut sep = 0.0;
    for z in &ood {
        sep += mu.iter().map(|p| dot(z, p)).fold(f64::MIN, f64::max) / ood.len() as f64;
    }
    let mut disp = 0.0;
    for i in 0..c as usize {
        for j in 0..c as usize {
            if i != j {
                disp += dot(&mu[i], &mu[j]) / (c as f64 * (c as f64 - 1.0));
            }
        }
    }
    let comp: f64 =
        id.iter().zip(&id_labels).map(|(z, &y)| dot(z, &mu[y as usize])).sum::<f64>() / id.len() as f64;
    for (got, want, what) in
        [(m.cos_separation, sep, "sep"), (m.cos_dispersion, disp, "disp"), (m.cos_compactness, comp, "comp")]
    {
        assert!((got - want).abs() < 1e-12, "{what}: {got} vs {want}");
    }
    assert!((m.compactness_deg - comp.acos().to_degrees()).abs() < 1e-9);
}
