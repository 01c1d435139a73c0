//! Independent f64 reference implementations (naive loops over `Vec<f64>`) and random inputs.

#![allow(dead_code, clippy::needless_range_loop)] // naive index loops on purpose

use std::sync::Arc;

use hamos_api::{Backend, HamosRng, Result, Tensor};
use rand::Rng;

/// Rows of `f64`.
pub type Rows = Vec<Vec<f64>>;

/// The candle CPU backend.
pub fn backend() -> Arc<dyn Backend> {
    Arc::new(hamos_candle::CandleBackend::cpu())
}

/// `n` random unit rows of dimension `d`, already rounded to `f32` (so the reference sees the
/// exact inputs the backend sees).
pub fn unit_rows(rng: &mut HamosRng, n: usize, d: usize) -> Rows {
    let raw = hamos_api::backend::randn_host(n * d, 0.0, 1.0, rng);
    raw.chunks(d)
        .map(|r| normalize(&r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()))
        .map(round_f32)
        .collect()
}

/// `n` random labels in `0..c`, each class appearing at least once when `n >= c`.
pub fn labels(rng: &mut HamosRng, n: usize, c: usize) -> Vec<usize> {
    (0..n).map(|i| if i < c { i } else { rng.random_range(0..c) }).collect()
}

fn round_f32(row: Vec<f64>) -> Vec<f64> {
    row.into_iter().map(|v| f64::from(v as f32)).collect()
}

/// Uploads rows as an `[n, d]` tensor.
pub fn tensor(backend: &Arc<dyn Backend>, rows: &Rows) -> Result<Tensor> {
    let d = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    backend.from_f32(&flat, &[rows.len(), d])
}

/// Uploads labels as an `[n]` `I64` tensor.
pub fn label_tensor(backend: &Arc<dyn Backend>, labels: &[usize]) -> Result<Tensor> {
    let data: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    backend.from_i64(&data, &[labels.len()])
}

/// The single value of a `[1]` tensor as `f64`.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.to_scalar_f32()?))
}

/// Asserts `|got - want| <= tol * max(1, |want|)`.
pub fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol * want.abs().max(1.0), "{what}: got {got}, want {want}");
}

/// Dot product.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Unit-norm copy (norm floored at 1e-12).
pub fn normalize(a: &[f64]) -> Vec<f64> {
    let n = dot(a, a).sqrt().max(1e-12);
    a.iter().map(|v| v / n).collect()
}

fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// CIDER's sequential prototype EMA, one row at a time.
pub fn ema_ref(prototypes: &Rows, z: &Rows, labels: &[usize], m: f64) -> Rows {
    let mut p = prototypes.clone();
    for (row, &c) in z.iter().zip(labels) {
        let mixed: Vec<f64> = p[c].iter().zip(row).map(|(a, b)| m * a + (1.0 - m) * b).collect();
        p[c] = normalize(&mixed);
    }
    p
}

/// `-(1/N) sum_i log softmax(z_i . mu / tau)_{c(i)}`.
pub fn comp_ref(z: &Rows, labels: &[usize], prototypes: &Rows, tau: f64) -> f64 {
    let mut total = 0.0;
    for (row, &c) in z.iter().zip(labels) {
        let logits: Vec<f64> = prototypes.iter().map(|p| dot(row, p) / tau).collect();
        total += logits[c] - log_sum_exp(&logits);
    }
    -total / z.len() as f64
}

/// `(1/C) sum_i log((1/(C-1)) sum_{j != i} exp(mu_i . mu_j / tau))`.
pub fn dis_ref(prototypes: &Rows, tau: f64) -> f64 {
    let c = prototypes.len();
    let mut total = 0.0;
    for i in 0..c {
        let mut sum = 0.0;
        for j in (0..c).filter(|&j| j != i) {
            sum += (dot(&prototypes[i], &prototypes[j]) / tau).exp();
        }
        total += (sum / (c - 1) as f64).ln();
    }
    total / c as f64
}

/// The full CIDER loss (prototypes updated in the loss, compactness on the updated ones).
pub fn cider_ref(
    z: &Rows,
    labels: &[usize],
    prototypes: &Rows,
    tau: f64,
    m: f64,
    w_comp: f64,
    w_dis: f64,
) -> f64 {
    let updated = ema_ref(prototypes, z, labels, m);
    w_comp * comp_ref(z, labels, &updated, tau) + w_dis * dis_ref(&updated, tau)
}

/// SupCon over all pairs, anchors without positives skipped.
pub fn supcon_ref(z: &Rows, labels: &[usize], tau: f64, base: f64) -> f64 {
    let b = z.len();
    let (mut total, mut anchors) = (0.0, 0usize);
    for i in 0..b {
        let positives: Vec<usize> = (0..b).filter(|&p| p != i && labels[p] == labels[i]).collect();
        if positives.is_empty() {
            continue;
        }
        let others: Vec<f64> = (0..b).filter(|&a| a != i).map(|a| dot(&z[i], &z[a]) / tau).collect();
        let denominator = log_sum_exp(&others);
        let mean: f64 = positives.iter().map(|&p| dot(&z[i], &z[p]) / tau - denominator).sum::<f64>()
            / positives.len() as f64;
        total += mean;
        anchors += 1;
    }
    if anchors == 0 {
        return 0.0;
    }
    -(tau / base) * total / anchors as f64
}

/// NT-Xent with partner `(i + b/2) mod b`.
pub fn simclr_ref(z: &Rows, tau: f64) -> f64 {
    let b = z.len();
    let mut total = 0.0;
    for i in 0..b {
        let p = (i + b / 2) % b;
        let others: Vec<f64> = (0..b).filter(|&a| a != i).map(|a| dot(&z[i], &z[a]) / tau).collect();
        total += dot(&z[i], &z[p]) / tau - log_sum_exp(&others);
    }
    -total / b as f64
}

/// Eqn 7 as printed.
pub fn ood_ref(outliers: &Rows, prototypes: &Rows, tau: f64) -> f64 {
    let c = prototypes.len() as f64;
    let mut total = 0.0;
    for row in outliers {
        let logits: Vec<f64> = prototypes.iter().map(|p| dot(row, p) / tau).collect();
        let lse = log_sum_exp(&logits);
        total += logits.iter().map(|l| l - lse).sum::<f64>() / c;
    }
    total / outliers.len() as f64
}

/// Central differences of `f` with respect to every entry of `x`.
pub fn finite_differences(x: &Rows, f: impl Fn(&Rows) -> f64) -> Rows {
    let h = 1e-6;
    let mut grad = vec![vec![0.0; x[0].len()]; x.len()];
    for i in 0..x.len() {
        for j in 0..x[0].len() {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus[i][j] += h;
            minus[i][j] -= h;
            grad[i][j] = (f(&plus) - f(&minus)) / (2.0 * h);
        }
    }
    grad
}

/// Row-wise normalization of raw rows.
pub fn normalize_rows(x: &Rows) -> Rows {
    x.iter().map(|r| normalize(r)).collect()
}

/// Asserts `max |got - want| <= tol * max |want|` (plus a tiny absolute floor).
pub fn assert_grad_close(got: &[f32], want: &Rows, tol: f64, what: &str) {
    let want: Vec<f64> = want.iter().flatten().copied().collect();
    assert_eq!(got.len(), want.len(), "{what}: gradient sizes");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(&want).fold(0.0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs()));
    assert!(scale > 1e-6, "{what}: reference gradient is zero");
    assert!(worst <= tol * scale + 1e-6, "{what}: max error {worst} vs gradient scale {scale}");
}
