//! The OOD-discernment loss of Eqn 7.

use hamos_api::config::finite_in;
use hamos_api::{Error, Result, Tensor};

use crate::common::embedding_dims;

/// Eqn 7 of the paper, exactly as printed: for outliers `z_i` (`[m, d]`) and prototypes `mu_j`
/// (`[c, d]`),
///
/// ```text
/// L = (1/M) sum_i (1/C) sum_j log( exp(z_i . mu_j / tau) / sum_l exp(z_i . mu_l / tau) ),
/// ```
///
/// the mean log-posterior of the outliers over all classes, shape `[1]`. Gradients flow to both
/// arguments (prototypes normally arrive detached).
///
/// **Sign.** For a posterior `p`, `(1/C) sum_j log p_j = -log C - KL(U || p)` with `U` uniform:
/// the printed value is *largest* (`-log C`) when an outlier's class posterior is uniform, so
/// minimizing it as written drives posteriors *away* from uniform (towards confident
/// assignments). Its negation, `-L = CE(U, p) >= log C`, is the usual outlier-exposure loss and
/// is minimized exactly at uniform posteriors, which is what Section 3.3's text ("minimize the
/// likelihood of being assigned to any ID classes") intends; the authors' released trainer
/// minimizes `(1/C) sum_j -log softmax(-z . mu / tau)_j`, also minimal at uniform posteriors.
/// This function returns the printed value; the caller chooses the sign it minimizes.
pub fn ood_discernment_loss(outliers: &Tensor, prototypes: &Tensor, temperature: f64) -> Result<Tensor> {
    finite_in("train.ood_temperature", temperature, 0.0, f64::INFINITY, false)?;
    let (_, d) = embedding_dims("ood_discernment_loss", outliers)?;
    match prototypes.dims()[..] {
        [c, pd] if c > 0 && pd == d => {}
        _ => {
            return Err(Error::shape(
                "ood_discernment_loss",
                format!("prototypes {:?} do not match outliers {:?}", prototypes.dims(), outliers.dims()),
            ))
        }
    }
    outliers.matmul(&prototypes.t()?)?.scale(1.0 / temperature)?.log_softmax(1)?.mean_all()
}
