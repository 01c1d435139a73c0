//! RELATION, the neural relation graph score of Kim et al. (2023), as implemented in their code
//! (snu-mllab/Neural-Relation-Graph, `relation.py`) and in OpenOOD's `RelationPostprocessor`.

use hamos_api::config::{finite_in, positive};
use hamos_api::{Consumes, Error, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::{empty_scores, features_of, logits_of};

/// `S(x) = sum_j [r_j > threshold] r_j^pow` over all ID training samples `j`, with the kernel
/// `r_j = max(0, <f(x), f(x_j)>) * <p(x), p(x_j)>` of Kim et al. (`kernel_type = "cos_p"`):
/// - `f`: the penultimate features, l2-normalized (a zero row stays zero);
/// - `p`: the softmax of the classifier logits;
/// - edges at or below `threshold` (0.03) are dropped; `pow` 1 is the reference default
///   (their code warns that other values are "not optimal for OOD detection").
///
/// Higher means more ID (more and stronger edges to the training graph). This is OpenOOD's
/// returned confidence; the paper's Eqn 19 and Kim et al.'s script use `1 / (S + 1e-6)` as the
/// OOD score, a decreasing function of the same `S`, so every threshold metric agrees.
///
/// What follows the reference code rather than the paper's prose: no top-k restriction (every
/// training sample contributes), no ReLU on the features before normalizing (the reference
/// normalizes the raw penultimate features, which are already post-ReLU for ResNets), no label
/// term (it is only for label-noise detection), and the full training set (Kim et al.'s `hop`
/// subsampling for ImageNet is left to the caller). Fitting stores the normalized training
/// features `[n, w]` and probabilities `[n, c]`; scoring costs `chunk_rows * n` floats per chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelationScorer {
    /// Exponent of the kernel (1, the reference default; OpenOOD sweeps 1, 2, 4, 6, 8).
    pub pow: u32,
    /// Edges with kernel value at or below this are dropped (0.03 in the reference).
    pub threshold: f64,
    /// Test rows per `[chunk, n]` kernel matrix.
    pub chunk_rows: usize,
}

impl Default for RelationScorer {
    fn default() -> Self {
        RelationScorer { pow: 1, threshold: 0.03, chunk_rows: 256 }
    }
}

hamos_api::register_plugin!(
    Scorer,
    RelationScorer,
    "relation",
    "sum of thresholded feature-cosine x probability-similarity edges to the ID training graph (Kim et al. 2023)"
);

#[typetag::serde(name = "relation")]
impl Scorer for RelationScorer {
    fn validate(&self) -> Result<()> {
        positive("scorer.pow", self.pow as usize)?;
        finite_in("scorer.threshold", self.threshold, 0.0, f64::INFINITY, true)?;
        positive("scorer.chunk_rows", self.chunk_rows)
    }

    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Features, Consumes::Logits]
    }

    fn fit(&self, train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        self.validate()?;
        let (features, probs) = graph_inputs("relation scorer (training)", train)?;
        if features.dims()[0] == 0 {
            return Err(Error::Data("the `relation` scorer needs at least one training sample".into()));
        }
        Ok(Box::new(FittedRelation {
            features_t: features.t()?,
            probs_t: probs.t()?,
            pow: self.pow,
            threshold: self.threshold,
            chunk_rows: self.chunk_rows,
        }))
    }
}

/// Normalized features and softmax probabilities of `input`, checked to have one row each.
fn graph_inputs(op: &'static str, input: &ScoreInput) -> Result<(Tensor, Tensor)> {
    input.require("relation", &[Consumes::Features, Consumes::Logits])?;
    let (features, m, _) = features_of("relation", input)?;
    let logits = logits_of("relation", input)?;
    let rows = logits.dims()[0];
    if rows != m {
        return Err(Error::shape(op, format!("{m} feature rows but {rows} logit rows")));
    }
    Ok((features.detach()?.l2_normalize(1)?, logits.detach()?.softmax(1)?))
}

/// [`RelationScorer`] after fitting: the training graph's nodes, transposed for matmul.
#[derive(Debug, Clone)]
pub struct FittedRelation {
    features_t: Tensor,
    probs_t: Tensor,
    pow: u32,
    threshold: f64,
    chunk_rows: usize,
}

impl FittedScorer for FittedRelation {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        let (features, probs) = graph_inputs("relation scorer", input)?;
        let (m, w) = (features.dims()[0], features.dims()[1]);
        let (fit_w, fit_c) = (self.features_t.dims()[0], self.probs_t.dims()[0]);
        let c = probs.dims()[1];
        if w != fit_w || c != fit_c {
            return Err(Error::shape(
                "relation scorer",
                format!("test features/classes {w}/{c} differ from the training ones {fit_w}/{fit_c}"),
            ));
        }
        if m == 0 {
            return empty_scores(&features);
        }
        let mut parts = Vec::with_capacity(m.div_ceil(self.chunk_rows));
        for start in (0..m).step_by(self.chunk_rows) {
            let rows = self.chunk_rows.min(m - start);
            let cosine = features.narrow(0, start, rows)?.matmul(&self.features_t)?.relu()?;
            let similarity = probs.narrow(0, start, rows)?.matmul(&self.probs_t)?;
            let kernel = cosine.mul(&similarity)?;
            let kept = kernel.gt(&kernel.scalar_like(self.threshold as f32)?)?;
            parts.push(power(&kernel, self.pow)?.mul(&kept)?.sum(1, false)?);
        }
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}

/// `x^pow` element-wise by repeated squaring (exact products, and no `log` of zeros).
fn power(x: &Tensor, pow: u32) -> Result<Tensor> {
    let (mut result, mut base, mut rest) = (None::<Tensor>, x.clone(), pow);
    while rest > 0 {
        if rest & 1 == 1 {
            result = Some(match result {
                Some(r) => r.mul(&base)?,
                None => base.clone(),
            });
        }
        rest >>= 1;
        if rest > 0 {
            base = base.sqr()?;
        }
    }
    result.map_or_else(|| x.full_like(1.0), Ok)
}
