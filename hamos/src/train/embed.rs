//! Evaluation-mode passes over a whole image set: features, logits and embeddings on the host,
//! in chunks, without autograd history.

use hamos_api::{Backend, Forward, ParamStore, Result};
use hamos_nn::{Classifier, DualHeadNet};

use crate::data::{ImageSet, Normalizer};

/// Rows of one image set through a network, row-major on the host.
#[derive(Debug, Clone, Default)]
pub struct Embedded {
    /// Penultimate features `[n, w]`.
    pub features: Vec<f32>,
    /// Width `w`.
    pub feature_dim: usize,
    /// Logits `[n, classes]`.
    pub logits: Vec<f32>,
    /// Number of classes.
    pub classes: usize,
    /// Unit-norm embeddings `[n, d]` (empty for a plain classifier).
    pub embeddings: Vec<f32>,
    /// Embedding dimension `d` (0 for a plain classifier).
    pub embedding_dim: usize,
    /// Labels, when the set has them.
    pub labels: Option<Vec<i64>>,
}

impl Embedded {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.logits.len().checked_div(self.classes).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fraction of rows whose arg-max logit is the label (NaN without labels or rows).
    pub fn accuracy(&self) -> f64 {
        let Some(labels) = &self.labels else { return f64::NAN };
        if labels.is_empty() {
            return f64::NAN;
        }
        let hits = self
            .logits
            .chunks(self.classes)
            .zip(labels)
            .filter(|(row, &label)| argmax(row) == label as usize)
            .count();
        hits as f64 / labels.len() as f64
    }
}

/// Index of the largest value (first on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
        .0
}

/// Passes `set` through `net` (dual head) in evaluation mode, `chunk` images at a time.
pub fn embed_dual(
    net: &DualHeadNet,
    params: &ParamStore,
    set: &ImageSet,
    normalizer: &Normalizer,
    chunk: usize,
) -> Result<Embedded> {
    let mut out = Embedded {
        classes: net.classifier().classes(),
        feature_dim: net.classifier().backbone().feature_dim(),
        embedding_dim: net.embedding_dim(),
        labels: set.labels.clone(),
        ..Embedded::default()
    };
    let pass = Forward::eval(params);
    for_chunks(params.backend().as_ref(), set, normalizer, chunk, |images| {
        let rows = net.forward(&pass, images)?;
        out.features.extend(rows.features.to_vec_f32()?);
        out.logits.extend(rows.logits.to_vec_f32()?);
        out.embeddings.extend(rows.embeddings.to_vec_f32()?);
        Ok(())
    })?;
    Ok(out)
}

/// Passes `set` through a plain classifier in evaluation mode.
pub fn embed_classifier(
    net: &Classifier,
    params: &ParamStore,
    set: &ImageSet,
    normalizer: &Normalizer,
    chunk: usize,
) -> Result<Embedded> {
    let mut out = Embedded {
        classes: net.classes(),
        feature_dim: net.backbone().feature_dim(),
        labels: set.labels.clone(),
        ..Embedded::default()
    };
    let pass = Forward::eval(params);
    for_chunks(params.backend().as_ref(), set, normalizer, chunk, |images| {
        let features = net.features(&pass, images)?;
        out.logits.extend(net.head(&pass, &features)?.to_vec_f32()?);
        out.features.extend(features.to_vec_f32()?);
        Ok(())
    })?;
    Ok(out)
}

fn for_chunks(
    backend: &dyn Backend,
    set: &ImageSet,
    normalizer: &Normalizer,
    chunk: usize,
    mut f: impl FnMut(&hamos_api::Tensor) -> Result<()>,
) -> Result<()> {
    let [c, h, w] = set.shape;
    let indices: Vec<usize> = (0..set.len()).collect();
    let len = set.image_len();
    for part in indices.chunks(chunk.max(1)) {
        let mut pixels = vec![0.0; part.len() * len];
        for (out, &i) in pixels.chunks_exact_mut(len).zip(part) {
            normalizer.normalize_into(set.image(i), set.shape, out)?;
        }
        f(&backend.from_f32(&pixels, &[part.len(), c, h, w])?)?;
    }
    Ok(())
}
