//! The k-NN distance score of Sun et al. (2022), HamOS's inference-time scorer (Section 3.4).

use hamos_api::config::positive;
use hamos_api::{Consumes, Error, FittedScorer, Result, ScoreInput, Scorer, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::{empty_scores, rows_of};

/// `S(z) = -|z - z_(k)|_2`, minus the Euclidean distance from the (l2-normalized) test embedding
/// to its `k`-th nearest neighbour among the (l2-normalized) ID training embeddings (Section 3.4,
/// Eqn 18); thresholding it is the detector `D_beta` of Section 3.4. It reads the projected
/// embeddings (`ScoreInput.embeddings`), not the penultimate features, and the search is exact
/// (brute force over every training embedding, no approximate index), as in Sun et al.
///
/// Test rows are processed `chunk_rows` at a time: one `[chunk, n]` similarity matrix by matmul,
/// `topk` for the `k` most similar training rows, then the exact distance to the `k`-th one
/// (recomputed from the difference vector, so near neighbours keep full precision).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnScorer {
    /// Which neighbour: 50, the paper's setting for the KNN score (Appendix E.1). (Table 4's
    /// `k = 200` is the OOD-ness energy's neighbour count during synthesis, not this one.)
    pub k: usize,
    /// Test rows per similarity matrix, bounding memory to `chunk_rows * n` floats.
    pub chunk_rows: usize,
}

impl Default for KnnScorer {
    fn default() -> Self {
        KnnScorer { k: 50, chunk_rows: 1024 }
    }
}

hamos_api::register_plugin!(
    Scorer,
    KnnScorer,
    "knn",
    "minus the distance to the k-th nearest ID training embedding (Sun et al. 2022, Section 3.4)"
);

#[typetag::serde(name = "knn")]
impl Scorer for KnnScorer {
    fn validate(&self) -> Result<()> {
        positive("scorer.k", self.k)?;
        positive("scorer.chunk_rows", self.chunk_rows)
    }

    fn consumes(&self) -> &'static [Consumes] {
        &[Consumes::Embeddings]
    }

    fn fit(&self, train: &ScoreInput) -> Result<Box<dyn FittedScorer>> {
        self.validate()?;
        let (n, _) = rows_of("knn scorer", "training embeddings", &train.embeddings)?;
        if n < self.k {
            return Err(Error::invalid(
                "scorer.k",
                format!("k = {} exceeds the {n} ID training embeddings to search", self.k),
            ));
        }
        let bank = train.embeddings.detach()?.l2_normalize(1)?;
        Ok(Box::new(FittedKnn { bank_t: bank.t()?, bank, k: self.k, chunk_rows: self.chunk_rows }))
    }
}

/// [`KnnScorer`] after fitting: the normalized training embeddings.
#[derive(Debug, Clone)]
pub struct FittedKnn {
    bank: Tensor,
    bank_t: Tensor,
    k: usize,
    chunk_rows: usize,
}

impl FittedScorer for FittedKnn {
    fn score(&self, input: &ScoreInput) -> Result<Tensor> {
        let (m, d) = rows_of("knn scorer", "test embeddings", &input.embeddings)?;
        let bank_d = self.bank.dims()[1];
        if d != bank_d {
            return Err(Error::shape(
                "knn scorer",
                format!("test dimension {d} differs from training dimension {bank_d}"),
            ));
        }
        if m == 0 {
            return empty_scores(&input.embeddings);
        }
        let queries = input.embeddings.detach()?.l2_normalize(1)?;
        let mut parts = Vec::with_capacity(m.div_ceil(self.chunk_rows));
        for start in (0..m).step_by(self.chunk_rows) {
            let rows = self.chunk_rows.min(m - start);
            let chunk = queries.narrow(0, start, rows)?;
            let (_, nearest) = chunk.matmul(&self.bank_t)?.topk(self.k, 1, true)?;
            let kth = nearest.narrow(1, self.k - 1, 1)?.reshape(&[rows])?;
            let neighbour = self.bank.index_select(0, &kth)?;
            parts.push(chunk.sub(&neighbour)?.norm(1, false)?.neg()?);
        }
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}
