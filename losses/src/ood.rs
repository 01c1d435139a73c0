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

/// The base temperature of the authors' `CompLoss_ood`, which scales its value by
/// `temperature / 0.07`.
pub const RELEASED_BASE_TEMPERATURE: f64 = 0.07;

/// The OOD term of the authors' released trainer (`CompLoss_ood` in
/// `openood/trainers/hamos_trainer.py`), on whatever embeddings it is given (the trainer passes
/// the *ID batch*): with `s_ij = z_i . mu_j / tau`,
///
/// ```text
/// L = (tau / 0.07) (1/N) sum_i (1/C) sum_j -log( exp(-s_ij) / sum_l exp(-s_il) ),
/// ```
///
/// the cross-entropy from the uniform assignment to `softmax(-s_i)`, minimal (`log C`, before
/// scaling) when `z_i` is equally similar to every prototype. Shape `[1]`.
pub fn released_ood_loss(embeddings: &Tensor, prototypes: &Tensor, temperature: f64) -> Result<Tensor> {
    check_pair("released_ood_loss", embeddings, prototypes, temperature)?;
    let negated = embeddings.matmul(&prototypes.t()?)?.scale(-1.0 / temperature)?;
    negated.log_softmax(1)?.mean_all()?.scale(-temperature / RELEASED_BASE_TEMPERATURE)
}

/// Outliers as extra negatives of the compactness softmax (beyond the paper): for ID
/// embeddings `z_i` (`[n, d]`), prototypes `mu_j` (`[c, d]`, normally detached) and outliers
/// `o_k` (`[m, d]`),
///
/// ```text
/// L = (1/n) sum_i [ log( sum_j exp(z_i . mu_j / tau) + sum_k exp(z_i . o_k / tau) )
///                   - log( sum_j exp(z_i . mu_j / tau) ) ],
/// ```
///
/// which is exactly how much adding the outliers to the denominator of CIDER's compactness
/// term raises it. It is `>= 0`, falls as each `z_i` moves away from the outliers (relative to
/// the prototypes), and its gradient on `z_i` weighs every outlier by its own softmax share, so
/// each outlier has a gradient path to the network. Shape `[1]`.
pub fn outlier_negative_loss(
    embeddings: &Tensor,
    prototypes: &Tensor,
    outliers: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    check_pair("outlier_negative_loss", embeddings, prototypes, temperature)?;
    let (_, d) = embedding_dims("outlier_negative_loss", embeddings)?;
    let (_, od) = embedding_dims("outlier_negative_loss", outliers)?;
    if od != d {
        return Err(Error::shape(
            "outlier_negative_loss",
            format!("outliers {:?} do not match embeddings {:?}", outliers.dims(), embeddings.dims()),
        ));
    }
    let to_prototypes = embeddings.matmul(&prototypes.t()?)?.scale(1.0 / temperature)?;
    let to_outliers = embeddings.matmul(&outliers.t()?)?.scale(1.0 / temperature)?;
    let all = Tensor::cat(&[&to_prototypes, &to_outliers], 1)?;
    all.logsumexp(1, false)?.sub(&to_prototypes.logsumexp(1, false)?)?.mean_all()
}

fn check_pair(op: &'static str, embeddings: &Tensor, prototypes: &Tensor, temperature: f64) -> Result<()> {
    finite_in("train.ood_temperature", temperature, 0.0, f64::INFINITY, false)?;
    let (_, d) = embedding_dims(op, embeddings)?;
    match prototypes.dims()[..] {
        [c, pd] if c > 0 && pd == d => Ok(()),
        _ => Err(Error::shape(
            op,
            format!("prototypes {:?} do not match embeddings {:?}", prototypes.dims(), embeddings.dims()),
        )),
    }
}
