//! The Mahalanobis score with class means and a tied covariance (Lee et al. 2018, Eqn 21).

use hamos_api::config::finite_in;
use hamos_api::{Consumes, Error, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::{empty_scores, rows_of};
use crate::linalg::{cholesky, lower_inverse};

/// Elements of the `[rows, classes, d]` difference tensor built per chunk of test rows.
const CHUNK_ELEMENTS: usize = 1 << 22;

/// `S(z) = -min_c (z - mu_c)^T Sigma^{-1} (z - mu_c)` (Eqn 21: the squared Mahalanobis distance
/// to the closest class mean), fitted on the labelled ID training embeddings as given:
/// - `mu_c`: mean of the training rows of class `c` (classes without rows are left out);
/// - `Sigma = (1/N) sum_i (z_i - mu_{y_i})(z_i - mu_{y_i})^T`, the tied (shared) maximum
///   likelihood covariance, plus `ridge * (trace(Sigma) / d) * I` (an absolute `ridge * I`
///   if the trace is 0) so that it can be inverted;
/// - all in f64 on the host: Cholesky `Sigma = L L^T` and `W = L^{-1}`, so that the distance is
///   `|W z - W mu_c|^2`, computed on the backend as explicit differences (no cancellation).
///
/// Fitting errors when the training input has no labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MahalanobisScorer {
    /// Ridge added to the covariance, relative to its mean eigenvalue `trace / d`.
    pub ridge: f64,
}

impl Default for MahalanobisScorer {
    fn default() -> Self {
        MahalanobisScorer { ridge: 1e-6 }
    }
}

hamos_api::register_plugin!(
    Scorer,
    MahalanobisScorer,
    "mahalanobis",
    "minus the squared Mahalanobis distance to the closest class mean, tied covariance (Eqn 21)"
);

#[typetag::serde(name = "mahalanobis")]
impl Scorer for MahalanobisScorer {
    fn validate(&self) -> Result<()> {
        finite_in("scorer.ridge", self.ridge, 0.0, f64::INFINITY, true)
    }

    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Embeddings]
    }

    fn fit(&self, train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        self.validate()?;
        let (n, d) = rows_of("mahalanobis scorer", "training embeddings", &train.embeddings)?;
        let labels = train.labels.as_ref().ok_or_else(|| {
            Error::Data(
                "the `mahalanobis` scorer needs the labels of the ID training embeddings \
                 (ScoreInput.labels) to fit class means; none were given"
                    .into(),
            )
        })?;
        if n == 0 || labels.elem_count() != n {
            return Err(Error::Data(format!(
                "mahalanobis scorer: {} labels for {n} training embeddings (need one per row, n >= 1)",
                labels.elem_count()
            )));
        }
        let labels = labels
            .to_vec_i64()?
            .into_iter()
            .map(|l| {
                usize::try_from(l).map_err(|_| Error::Data(format!("mahalanobis scorer: negative label {l}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<f64> = train.embeddings.detach()?.to_vec_f32()?.into_iter().map(f64::from).collect();
        let (means, covariance) = class_means_and_covariance(&rows, &labels, d);

        let trace: f64 = (0..d).map(|i| covariance[i * d + i]).sum();
        let scale = if trace > 0.0 { trace / d as f64 } else { 1.0 };
        let mut regularized = covariance;
        for i in 0..d {
            regularized[i * d + i] += self.ridge * scale;
        }
        let l = cholesky(&regularized, d).map_err(|pivot| {
            Error::invalid(
                "scorer.ridge",
                format!(
                    "the tied covariance of the training embeddings is singular (pivot {pivot} of {d}) \
                     with ridge {}; raise scorer.ridge",
                    self.ridge
                ),
            )
        })?;
        let w = lower_inverse(&l, d);
        // y = z W^T, so upload W^T; centers nu_c = W mu_c.
        let w_t: Vec<f32> = (0..d * d).map(|i| w[(i % d) * d + i / d] as f32).collect();
        let centers: Vec<f32> = means
            .iter()
            .flat_map(|mu| {
                (0..d).map(|r| (0..=r).map(|k| w[r * d + k] * mu[k]).sum::<f64>() as f32).collect::<Vec<_>>()
            })
            .collect();
        let backend = train.embeddings.backend();
        Ok(Box::new(FittedMahalanobis {
            whiten_t: backend.from_f32(&w_t, &[d, d])?,
            centers: backend.from_f32(&centers, &[means.len(), d])?,
        }))
    }
}

/// Means of the classes present (in class order) and the tied covariance, row-major `d x d`.
fn class_means_and_covariance(rows: &[f64], labels: &[usize], d: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let classes = labels.iter().max().map_or(0, |&m| m + 1);
    let mut sums = vec![vec![0.0; d]; classes];
    let mut counts = vec![0usize; classes];
    for (row, &c) in rows.chunks(d).zip(labels) {
        counts[c] += 1;
        sums[c].iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
    let means: Vec<Vec<f64>> = sums
        .into_iter()
        .zip(&counts)
        .map(|(s, &n)| s.into_iter().map(|v| v / n.max(1) as f64).collect())
        .collect();
    let mut covariance = vec![0.0; d * d];
    let mut centered = vec![0.0; d];
    for (row, &c) in rows.chunks(d).zip(labels) {
        centered.iter_mut().zip(row.iter().zip(&means[c])).for_each(|(x, (v, m))| *x = v - m);
        for i in 0..d {
            for j in 0..=i {
                covariance[i * d + j] += centered[i] * centered[j];
            }
        }
    }
    let n = labels.len() as f64;
    for i in 0..d {
        for j in 0..=i {
            let value = covariance[i * d + j] / n;
            covariance[i * d + j] = value;
            covariance[j * d + i] = value;
        }
    }
    let present = means.into_iter().zip(&counts).filter(|(_, &n)| n > 0).map(|(m, _)| m).collect();
    (present, covariance)
}

/// [`MahalanobisScorer`] after fitting: the whitening map and the whitened class means.
#[derive(Debug, Clone)]
pub struct FittedMahalanobis {
    whiten_t: Tensor,
    centers: Tensor,
}

impl FittedScorer for FittedMahalanobis {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        let (m, d) = rows_of("mahalanobis scorer", "test embeddings", &input.embeddings)?;
        let [classes, fit_d] = self.centers.dims()[..] else {
            return Err(Error::shape("mahalanobis scorer", "fitted centers are not [c, d]"));
        };
        if d != fit_d {
            return Err(Error::shape(
                "mahalanobis scorer",
                format!("test dimension {d} differs from training dimension {fit_d}"),
            ));
        }
        if m == 0 {
            return empty_scores(&input.embeddings);
        }
        let whitened = input.embeddings.detach()?.matmul(&self.whiten_t)?;
        let centers = self.centers.reshape(&[1, classes, d])?;
        let chunk = (CHUNK_ELEMENTS / (classes * d)).max(1);
        let mut parts = Vec::with_capacity(m.div_ceil(chunk));
        for start in (0..m).step_by(chunk) {
            let rows = chunk.min(m - start);
            let y = whitened.narrow(0, start, rows)?.reshape(&[rows, 1, d])?;
            let distances = y.sub(&centers)?.sqr()?.sum(2, false)?;
            parts.push(distances.min(1, false)?.neg()?);
        }
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}
