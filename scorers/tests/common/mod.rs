//! Independent f64 reference scores (naive loops) and random inputs.

#![allow(dead_code, clippy::needless_range_loop)] // naive index loops on purpose

use std::sync::Arc;

use hamos_api::{Backend, HamosRng, Result, Tensor};

/// Rows of `f64`.
pub type Rows = Vec<Vec<f64>>;

/// The candle CPU backend.
pub fn backend() -> Arc<dyn Backend> {
    Arc::new(hamos_candle::CandleBackend::cpu())
}

/// `n` rows of `center + std * N(0, I)`, rounded to `f32`.
pub fn gaussian_rows(rng: &mut HamosRng, n: usize, center: &[f64], std: f32) -> Rows {
    let d = center.len();
    let noise = hamos_api::backend::randn_host(n * d, 0.0, std, rng);
    noise
        .chunks(d)
        .map(|r| r.iter().zip(center).map(|(e, c)| f64::from((c + f64::from(*e)) as f32)).collect())
        .collect()
}

/// Unit-norm copies of `rows`, rounded to `f32`.
pub fn unit(rows: &Rows) -> Rows {
    rows.iter().map(|r| normalize(r).into_iter().map(|v| f64::from(v as f32)).collect()).collect()
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

/// Asserts elementwise `|got - want| <= tol * max(1, |want|)`.
pub fn assert_all_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let g = f64::from(*g);
        assert!((g - w).abs() <= tol * w.abs().max(1.0), "{what}[{i}]: got {g}, want {w}");
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn normalize(a: &[f64]) -> Vec<f64> {
    let n = dot(a, a).sqrt().max(1e-12);
    a.iter().map(|v| v / n).collect()
}

/// Minus the distance to the k-th nearest normalized training row.
pub fn knn_ref(train: &Rows, test: &Rows, k: usize) -> Vec<f64> {
    let train: Rows = train.iter().map(|r| normalize(r)).collect();
    test.iter()
        .map(|q| {
            let q = normalize(q);
            let mut dists: Vec<f64> = train
                .iter()
                .map(|t| t.iter().zip(&q).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt())
                .collect();
            dists.sort_by(f64::total_cmp);
            -dists[k - 1]
        })
        .collect()
}

/// Inverse by Gauss-Jordan elimination with partial pivoting.
fn inverse(mut a: Rows) -> Rows {
    let n = a.len();
    let mut inv: Rows = (0..n).map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect()).collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let p = a[col][col];
        for j in 0..n {
            a[col][j] /= p;
            inv[col][j] /= p;
        }
        for row in (0..n).filter(|&r| r != col) {
            let f = a[row][col];
            for j in 0..n {
                a[row][j] -= f * a[col][j];
                inv[row][j] -= f * inv[col][j];
            }
        }
    }
    inv
}

/// Minus the smallest squared Mahalanobis distance under the tied, ridged covariance.
pub fn mahalanobis_ref(train: &Rows, labels: &[usize], test: &Rows, ridge: f64) -> Vec<f64> {
    let d = train[0].len();
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut means = vec![vec![0.0; d]; classes];
    let mut counts = vec![0.0; classes];
    for (row, &c) in train.iter().zip(labels) {
        counts[c] += 1.0;
        for j in 0..d {
            means[c][j] += row[j];
        }
    }
    for c in 0..classes {
        for j in 0..d {
            means[c][j] /= f64::max(counts[c], 1.0);
        }
    }
    let mut cov = vec![vec![0.0; d]; d];
    for (row, &c) in train.iter().zip(labels) {
        for i in 0..d {
            for j in 0..d {
                cov[i][j] += (row[i] - means[c][i]) * (row[j] - means[c][j]) / train.len() as f64;
            }
        }
    }
    let trace: f64 = (0..d).map(|i| cov[i][i]).sum();
    for i in 0..d {
        cov[i][i] += ridge * trace / d as f64;
    }
    let precision = inverse(cov);
    test.iter()
        .map(|x| {
            let best = (0..classes)
                .filter(|&c| counts[c] > 0.0)
                .map(|c| {
                    let diff: Vec<f64> = x.iter().zip(&means[c]).map(|(a, b)| a - b).collect();
                    (0..d).map(|i| diff[i] * dot(&precision[i], &diff)).sum::<f64>()
                })
                .fold(f64::INFINITY, f64::min);
            -best
        })
        .collect()
}

/// Maximum softmax probability.
pub fn msp_ref(logits: &Rows) -> Vec<f64> {
    logits
        .iter()
        .map(|l| {
            let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            1.0 / l.iter().map(|v| (v - max).exp()).sum::<f64>()
        })
        .collect()
}

/// `T * log sum exp(l / T)`.
pub fn energy_ref(logits: &Rows, t: f64) -> Vec<f64> {
    logits
        .iter()
        .map(|l| {
            let max = l.iter().map(|v| v / t).fold(f64::NEG_INFINITY, f64::max);
            t * (max + l.iter().map(|v| (v / t - max).exp()).sum::<f64>().ln())
        })
        .collect()
}

/// Largest logit.
pub fn maxlogit_ref(logits: &Rows) -> Vec<f64> {
    logits.iter().map(|l| l.iter().copied().fold(f64::NEG_INFINITY, f64::max)).collect()
}

/// `w - round(w * p / 100)` with the rounding of `np.round` (half to even), written out.
pub fn kept_ref(w: usize, percentile: f64) -> usize {
    let v = w as f64 * percentile / 100.0;
    let floor = v.floor();
    let rounded =
        if v - floor > 0.5 || (v - floor == 0.5 && floor % 2.0 != 0.0) { floor + 1.0 } else { floor };
    w - rounded as usize
}

/// ASH-S (`prune`) or SCALE energy of feature rows with head `weight` `[c][w]`, `bias` `[c]`.
pub fn shaped_energy_ref(x: &Rows, weight: &Rows, bias: &[f64], percentile: f64, prune: bool) -> Vec<f64> {
    x.iter()
        .map(|row| {
            let k = kept_ref(row.len(), percentile);
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let s1: f64 = row.iter().sum();
            let s2: f64 = order[..k].iter().map(|&i| row[i]).sum();
            let factor = if s2 == 0.0 { 1.0 } else { (s1 / s2).exp() };
            let mut a = vec![0.0; row.len()];
            for (rank, &i) in order.iter().enumerate() {
                if !prune || rank < k {
                    a[i] = row[i] * factor;
                }
            }
            let logits: Vec<f64> = weight.iter().zip(bias).map(|(w, b)| dot(w, &a) + b).collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            max + logits.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
        })
        .collect()
}

fn softmax(l: &[f64]) -> Vec<f64> {
    let max = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = l.iter().map(|v| (v - max).exp()).sum();
    l.iter().map(|v| (v - max).exp() / total).collect()
}

/// RELATION: `sum_j [r > thres] r^pow`, `r = max(0, cos(f, f_j)) * <softmax, softmax_j>`.
pub fn relation_ref(
    train_features: &Rows,
    train_logits: &Rows,
    test_features: &Rows,
    test_logits: &Rows,
    pow: i32,
    threshold: f64,
) -> Vec<f64> {
    let train: Vec<(Vec<f64>, Vec<f64>)> =
        train_features.iter().zip(train_logits).map(|(f, l)| (normalize(f), softmax(l))).collect();
    test_features
        .iter()
        .zip(test_logits)
        .map(|(f, l)| {
            let (f, p) = (normalize(f), softmax(l));
            let mut score = 0.0;
            for (fj, pj) in &train {
                let r = dot(&f, fj).max(0.0) * dot(&p, pj);
                if r > threshold {
                    score += r.powi(pow);
                }
            }
            score
        })
        .collect()
}
