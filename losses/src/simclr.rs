//! SimCLR's NT-Xent loss (Chen et al. 2020), the unsupervised contrastive loss of Table 12.

use hamos_api::config::finite_in;
use hamos_api::{ContrastiveBatch, ContrastiveLoss, Error, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::{embedding_dims, masked_logsumexp_rows, off_diagonal};

/// NT-Xent over the two views of the batch: with `b = 2n` rows, rows `i` and `i + n` are the two
/// views of one image (see [`ContrastiveBatch`]), and
///
/// ```text
/// L = -(1/b) sum_i log( exp(z_i . z_p(i) / tau) / sum_{a != i} exp(z_i . z_a / tau) ),
/// p(i) = (i + n) mod b.
/// ```
///
/// Labels and prototypes are ignored (SimCLR is unsupervised); an odd batch is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimClr {
    /// Temperature `tau`: 0.5, SimCLR's setting for CIFAR-10 (Chen et al. 2020, Appendix B.9;
    /// `--temperature=0.5` in the official CIFAR-10 command).
    pub temperature: f64,
}

impl Default for SimClr {
    fn default() -> Self {
        SimClr { temperature: 0.5 }
    }
}

hamos_api::register_plugin!(
    Loss,
    SimClr,
    "simclr",
    "SimCLR NT-Xent: each row's positive is its other view (Chen et al. 2020)"
);

#[typetag::serde(name = "simclr")]
impl ContrastiveLoss for SimClr {
    fn validate(&self) -> Result<()> {
        finite_in("loss.temperature", self.temperature, 0.0, f64::INFINITY, false)
    }

    fn loss(&self, batch: &ContrastiveBatch) -> Result<Tensor> {
        self.validate()?;
        let z = &batch.embeddings;
        let (b, _) = embedding_dims("simclr", z)?;
        if b % 2 != 0 {
            return Err(Error::shape(
                "simclr",
                format!("a batch of {b} rows is odd; SimCLR needs two views, rows i and i + b/2"),
            ));
        }
        let half = b / 2;
        let partner: Vec<i64> = (0..b).map(|i| ((i + half) % b) as i64).collect();
        let partner = z.backend().from_i64(&partner, &[b, 1])?;

        let logits = z.matmul(&z.t()?)?.scale(1.0 / self.temperature)?;
        let log_prob = logits.sub(&masked_logsumexp_rows(&logits, &off_diagonal(z, b)?)?)?;
        log_prob.gather(1, &partner)?.mean_all()?.neg()
    }
}
