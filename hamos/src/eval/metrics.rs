//! OOD detection metrics, classification accuracy and the hyperspherical embedding metrics of
//! Eqn 14 (Appendix C.4), in plain host `f64` (no tensors).
//!
//! Conventions of the detection metrics:
//! - ID is the positive class and a higher score means more ID-like (every `hamos-scorers`
//!   scorer follows this);
//! - results are fractions in `[0, 1]`, not percentages;
//! - an empty score set or a NaN score is an error naming the set; infinite scores are ordered
//!   as usual; `-0.0` and `0.0` are the same score; constant scores are valid (AUROC 0.5,
//!   FPR95 1.0);
//! - ties are exact: equal scores form one threshold.
//!
//! [`fpr_at_95_tpr`] keeps the brief's ID-positive definition; [`fpr95_openood`] reproduces
//! OpenOOD v1.5 (`openood/evaluators/metrics.py`, `auc_and_fpr_recall`), which treats OOD as
//! positive; the HamOS paper evaluates with OpenOOD v1.5, so its FPR95 column is the latter.

use std::cmp::Ordering;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// A set that needs at least one element is empty.
    #[error("{what} is empty; the metric needs at least one value")]
    Empty {
        /// Which set, e.g. `ID scores`.
        what: &'static str,
    },
    /// NaN values where numbers are needed.
    #[error("{what} contain {count} NaN value(s), the first at index {first}")]
    NaN {
        /// Which set, e.g. `OOD scores`.
        what: &'static str,
        /// How many NaNs.
        count: usize,
        /// Index of the first one.
        first: usize,
    },
    /// Inputs that do not fit together (lengths, labels, dimensions, zero vectors).
    #[error("{0}")]
    Invalid(String),
}

impl From<MetricsError> for hamos_api::Error {
    fn from(err: MetricsError) -> Self {
        hamos_api::Error::Data(format!("metrics: {err}"))
    }
}

/// Result of a metric.
pub type MetricsResult<T> = Result<T, MetricsError>;

/// The detection metrics of one ID set against one OOD set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OodMetrics {
    /// [`fpr_at_95_tpr`]: OOD fraction accepted at 95% ID recall.
    pub fpr95: f64,
    /// [`auroc`].
    pub auroc: f64,
    /// [`aupr_in`]: average precision with ID positive.
    pub aupr_in: f64,
    /// [`aupr_out`]: average precision with OOD positive.
    pub aupr_out: f64,
    /// [`fpr95_openood`]: OpenOOD v1.5's FPR@95 (ID fraction rejected at 95% OOD recall).
    pub fpr95_openood: f64,
}

impl OodMetrics {
    /// All five metrics; errors on an empty set or NaN scores.
    pub fn compute(id: &[f64], ood: &[f64]) -> MetricsResult<OodMetrics> {
        Ok(OodMetrics {
            fpr95: fpr_at_95_tpr(id, ood)?,
            auroc: auroc(id, ood)?,
            aupr_in: aupr_in(id, ood)?,
            aupr_out: aupr_out(id, ood)?,
            fpr95_openood: fpr95_openood(id, ood)?,
        })
    }
}

/// Checks both score sets (non-empty, no NaN).
fn check_scores(id: &[f64], ood: &[f64]) -> MetricsResult<()> {
    check_values("ID scores", id)?;
    check_values("OOD scores", ood)
}

fn check_values(what: &'static str, values: &[f64]) -> MetricsResult<()> {
    if values.is_empty() {
        return Err(MetricsError::Empty { what });
    }
    let mut nan = values.iter().enumerate().filter(|(_, v)| v.is_nan()).map(|(i, _)| i);
    if let Some(first) = nan.next() {
        return Err(MetricsError::NaN { what, count: 1 + nan.count(), first });
    }
    Ok(())
}

/// Numeric order; only called on NaN-free data, where `partial_cmp` is total (and `-0 == 0`).
fn numeric(a: &f64, b: &f64) -> Ordering {
    a.partial_cmp(b).unwrap_or(Ordering::Equal)
}

/// Per distinct score in increasing order: `(positives, negatives)` holding exactly that score.
fn tie_groups(positive: &[f64], negative: &[f64]) -> Vec<(u64, u64)> {
    let mut all: Vec<(f64, bool)> =
        positive.iter().map(|&s| (s, true)).chain(negative.iter().map(|&s| (s, false))).collect();
    all.sort_by(|a, b| numeric(&a.0, &b.0));
    let mut groups: Vec<(u64, u64)> = Vec::new();
    let mut last = None;
    for (score, is_positive) in all {
        if last != Some(score) {
            groups.push((0, 0));
            last = Some(score);
        }
        if let Some(group) = groups.last_mut() {
            if is_positive {
                group.0 += 1;
            } else {
                group.1 += 1;
            }
        }
    }
    groups
}

/// FPR at 95% TPR, ID positive: the threshold `t` is the largest value such that at least 95%
/// of the ID scores are `>= t` (the `ceil(0.95 n)`-th largest ID score, in exact integer
/// arithmetic), and the result is the fraction of OOD scores `>= t`.
pub fn fpr_at_95_tpr(id: &[f64], ood: &[f64]) -> MetricsResult<f64> {
    check_scores(id, ood)?;
    let mut sorted = id.to_vec();
    sorted.sort_by(|a, b| numeric(b, a));
    let rank = (95 * sorted.len()).div_ceil(100);
    let threshold = sorted[rank - 1];
    let accepted = ood.iter().filter(|&&s| s >= threshold).count();
    Ok(accepted as f64 / ood.len() as f64)
}

/// Area under the ROC curve: the probability that a random ID score exceeds a random OOD score,
/// ties counting 1/2 (the Mann-Whitney statistic, from exact integer tie-group counts).
pub fn auroc(id: &[f64], ood: &[f64]) -> MetricsResult<f64> {
    check_scores(id, ood)?;
    // Twice the statistic, so that ties' halves stay integers.
    let mut twice_u: u128 = 0;
    let mut ood_below: u128 = 0;
    for (ids, oods) in tie_groups(id, ood) {
        twice_u += u128::from(ids) * (2 * ood_below + u128::from(oods));
        ood_below += u128::from(oods);
    }
    Ok(twice_u as f64 / (2.0 * id.len() as f64 * ood.len() as f64))
}

/// Step-wise average precision of `positive` against `negative` (higher = positive):
/// `sum_k (R_k - R_{k-1}) P_k` over the distinct scores `k` in decreasing order, equal scores
/// being one threshold (scikit-learn's `average_precision_score`).
fn average_precision(positive: &[f64], negative: &[f64]) -> f64 {
    let (mut tp, mut fp, mut ap) = (0u64, 0u64, 0.0);
    for (pos, neg) in tie_groups(positive, negative).into_iter().rev() {
        tp += pos;
        fp += neg;
        if pos > 0 {
            ap += (pos as f64 / positive.len() as f64) * (tp as f64 / (tp + fp) as f64);
        }
    }
    ap
}

/// AUPR-In: average precision with ID positive and the scores as given.
pub fn aupr_in(id: &[f64], ood: &[f64]) -> MetricsResult<f64> {
    check_scores(id, ood)?;
    Ok(average_precision(id, ood))
}

/// AUPR-Out: average precision with OOD positive and the scores negated.
pub fn aupr_out(id: &[f64], ood: &[f64]) -> MetricsResult<f64> {
    check_scores(id, ood)?;
    let negate = |s: &[f64]| s.iter().map(|v| -v).collect::<Vec<_>>();
    Ok(average_precision(&negate(ood), &negate(id)))
}

/// OpenOOD v1.5's FPR@95, exactly as `fpr_list[np.argmax(tpr_list >= 0.95)]` after
/// `roc_curve(ood_indicator, -conf)` (scikit-learn, `drop_intermediate=True`) with our scores as
/// `conf`: OOD is the positive class, and a sample is flagged at threshold `x` when its score is
/// `<= x`. Over the distinct scores `x` in increasing order (the ROC points), with
/// `tps = #OOD <= x`, `fps = #ID <= x`, points collinear with both neighbours are dropped (as
/// scikit-learn does; with ties this can move the answer), `(0, 0)` is prepended, and the result
/// is `fps / n_id` at the first point with `tps / n_ood >= 0.95`: the fraction of ID samples
/// wrongly rejected when 95% of the OOD samples are caught.
pub fn fpr95_openood(id: &[f64], ood: &[f64]) -> MetricsResult<f64> {
    check_scores(id, ood)?;
    let (mut fps, mut tps) = (0i128, 0i128);
    let mut points: Vec<(i128, i128)> = Vec::new();
    for (oods, ids) in tie_groups(ood, id) {
        tps += i128::from(oods);
        fps += i128::from(ids);
        points.push((fps, tps));
    }
    if points.len() > 2 {
        let mut kept = vec![points[0]];
        for w in points.windows(3) {
            let bend = |f: fn(&(i128, i128)) -> i128| f(&w[2]) - 2 * f(&w[1]) + f(&w[0]) != 0;
            if bend(|p| p.0) || bend(|p| p.1) {
                kept.push(w[1]);
            }
        }
        kept.extend(points.last().copied());
        points = kept;
    }
    points.insert(0, (0, 0));
    let (n_id, n_ood) = (fps as f64, tps as f64);
    let first = points.iter().find(|p| p.1 as f64 / n_ood >= 0.95);
    Ok(first.map_or(1.0, |p| p.0 as f64 / n_id))
}

/// Top-1 accuracy of logits rows `[m][c]` against labels `[m]`: the predicted class is the first
/// maximal logit (as `argmax` in PyTorch and NumPy). Errors on no rows, a length mismatch, NaN
/// logits, an empty row, or a label outside `0..c`.
pub fn accuracy<R, T>(logits_rows: &[R], labels: &[i64]) -> MetricsResult<f64>
where
    R: AsRef<[T]>,
    T: Copy + Into<f64>,
{
    if logits_rows.is_empty() {
        return Err(MetricsError::Empty { what: "logits rows" });
    }
    if logits_rows.len() != labels.len() {
        return Err(MetricsError::Invalid(format!(
            "accuracy: {} logits rows but {} labels",
            logits_rows.len(),
            labels.len()
        )));
    }
    let mut correct = 0usize;
    for (i, (row, &label)) in logits_rows.iter().zip(labels).enumerate() {
        let row: Vec<f64> = row.as_ref().iter().map(|&v| v.into()).collect();
        if row.iter().any(|v| v.is_nan()) {
            return Err(MetricsError::Invalid(format!("accuracy: logits row {i} contains NaN")));
        }
        if !usize::try_from(label).is_ok_and(|l| l < row.len()) {
            return Err(MetricsError::Invalid(format!(
                "accuracy: label {label} of row {i} is outside 0..{}",
                row.len()
            )));
        }
        let predicted = (1..row.len()).fold(0, |best, c| if row[c] > row[best] { c } else { best });
        correct += usize::from(i64::try_from(predicted) == Ok(label));
    }
    Ok(correct as f64 / labels.len() as f64)
}

/// The hyperspherical metrics of Eqn 14 (Appendix C.4, following CIDER), as cosines and as
/// angles in degrees (`acos` of the cosine, the "angular degree form" of Tables 3 and 8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HypersphereMetrics {
    /// `cosSeparation = mean_{OOD i} max_c z_i . mu_c`.
    pub cos_separation: f64,
    /// `cosDispersion = (1/C) sum_i (1/(C-1)) sum_{j != i} mu_i . mu_j`.
    pub cos_dispersion: f64,
    /// `cosCompactness = mean_{ID i} z_i . mu_{y_i}`.
    pub cos_compactness: f64,
    /// ID-OOD separation in degrees (higher is better).
    pub separation_deg: f64,
    /// Inter-class dispersion in degrees (higher is better).
    pub dispersion_deg: f64,
    /// Intra-class compactness in degrees (lower is better).
    pub compactness_deg: f64,
}

impl HypersphereMetrics {
    /// Eqn 14 for class prototypes `mu` `[C][d]`, labelled ID test embeddings and OOD test
    /// embeddings; every vector is l2-normalized first (a no-op for unit-norm embeddings), and
    /// the degrees are `acos` of each averaged cosine (our reading of "angular degree form";
    /// averaging per-sample angles instead would give different numbers). Needs `C >= 2`.
    pub fn compute<R, T>(
        prototypes: &[Vec<f64>],
        id: &[R],
        id_labels: &[i64],
        ood: &[R],
    ) -> MetricsResult<HypersphereMetrics>
    where
        R: AsRef<[T]>,
        T: Copy + Into<f64>,
    {
        if prototypes.len() < 2 {
            return Err(MetricsError::Invalid(format!(
                "Eqn 14 needs at least 2 class prototypes, got {}",
                prototypes.len()
            )));
        }
        let d = prototypes[0].len();
        let mu = unit_rows("class prototypes", prototypes, d)?;
        let id_rows = unit_rows("ID embeddings", id, d)?;
        let ood_rows = unit_rows("OOD embeddings", ood, d)?;
        let classes = class_indices(id_labels, id_rows.len(), mu.len())?;
        let c = mu.len() as f64;

        let separation = ood_rows
            .iter()
            .map(|z| mu.iter().map(|m| dot(z, m)).fold(f64::NEG_INFINITY, f64::max))
            .sum::<f64>()
            / ood_rows.len() as f64;
        let dispersion = (0..mu.len())
            .map(|i| (0..mu.len()).filter(|&j| j != i).map(|j| dot(&mu[i], &mu[j])).sum::<f64>() / (c - 1.0))
            .sum::<f64>()
            / c;
        let compactness =
            id_rows.iter().zip(&classes).map(|(z, &y)| dot(z, &mu[y])).sum::<f64>() / id_rows.len() as f64;
        let degrees = |cos: f64| cos.clamp(-1.0, 1.0).acos().to_degrees();
        Ok(HypersphereMetrics {
            cos_separation: separation,
            cos_dispersion: dispersion,
            cos_compactness: compactness,
            separation_deg: degrees(separation),
            dispersion_deg: degrees(dispersion),
            compactness_deg: degrees(compactness),
        })
    }
}

/// Class prototypes `mu_c = normalize(mean of the normalized embeddings of class c)` for classes
/// `0..=max label`; errors when a class in that range has no embedding.
pub fn class_prototypes<R, T>(embeddings: &[R], labels: &[i64]) -> MetricsResult<Vec<Vec<f64>>>
where
    R: AsRef<[T]>,
    T: Copy + Into<f64>,
{
    let d = embeddings.first().map_or(0, |r| r.as_ref().len());
    let rows = unit_rows("embeddings", embeddings, d)?;
    let max = labels.iter().copied().max().unwrap_or(-1);
    let count = usize::try_from(max + 1).unwrap_or(0);
    let classes = class_indices(labels, rows.len(), count)?;
    let mut sums = vec![vec![0.0; d]; count];
    let mut counts = vec![0usize; count];
    for (row, &c) in rows.iter().zip(&classes) {
        counts[c] += 1;
        sums[c].iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
    if let Some(empty) = counts.iter().position(|&n| n == 0) {
        return Err(MetricsError::Invalid(format!("class {empty} has no embedding to form its prototype")));
    }
    unit_rows("class means", &sums, d)
}

/// Labels as class indices in `0..classes`, one per row.
fn class_indices(labels: &[i64], rows: usize, classes: usize) -> MetricsResult<Vec<usize>> {
    if labels.len() != rows {
        return Err(MetricsError::Invalid(format!("{} labels for {rows} embeddings", labels.len())));
    }
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| match usize::try_from(l) {
            Ok(c) if c < classes => Ok(c),
            _ => Err(MetricsError::Invalid(format!("label {l} at index {i} is outside 0..{classes}"))),
        })
        .collect()
}

/// Rows in `f64`, l2-normalized; errors on no rows, a width other than `d`, NaN or a zero row.
fn unit_rows<R, T>(what: &'static str, rows: &[R], d: usize) -> MetricsResult<Vec<Vec<f64>>>
where
    R: AsRef<[T]>,
    T: Copy + Into<f64>,
{
    if rows.is_empty() {
        return Err(MetricsError::Empty { what });
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let row: Vec<f64> = row.as_ref().iter().map(|&v| v.into()).collect();
            let norm = dot(&row, &row).sqrt();
            if row.len() != d || d == 0 {
                Err(MetricsError::Invalid(format!(
                    "{what}: row {i} has width {}, expected {d} > 0",
                    row.len()
                )))
            } else if !(norm.is_finite() && norm > 0.0) {
                Err(MetricsError::Invalid(format!("{what}: row {i} has norm {norm}; cannot normalize it")))
            } else {
                Ok(row.iter().map(|v| v / norm).collect())
            }
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
