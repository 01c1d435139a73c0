//! CIDER (Ming et al. 2023): compactness to the class prototype plus dispersion of the
//! prototypes, the default ID contrastive loss of HamOS (Section 3.3, Appendix E.2 Eqn 22).

use hamos_api::config::finite_in;
use hamos_api::{ContrastiveBatch, ContrastiveLoss, Error, Result, Tensor};
use serde::{Deserialize, Serialize};

use crate::common::{embedding_dims, host_labels, labels_for, masked_logsumexp_rows, off_diagonal};

/// The CIDER loss `w_comp * L_comp + w_dis * L_dis` (Eqn 22 of the HamOS paper):
///
/// ```text
/// L_comp = -(1/N) sum_i log( exp(z_i . mu_c(i) / tau) / sum_j exp(z_i . mu_j / tau) )
/// L_dis  =  (1/C) sum_i log( (1/(C-1)) sum_{j != i} exp(mu_i . mu_j / tau) )
/// ```
///
/// **Prototypes, as in CIDER's code.** CIDER updates the prototypes *inside* the loss, one
/// batch row at a time (`mu_c <- normalize(m * mu_c + (1 - m) * z_i)` for each row `i` of class
/// `c`, in row order, see [`update_prototypes`]), and computes the dispersion on the updated
/// prototypes, which therefore carry gradient back to the batch embeddings; the compactness
/// uses the same updated prototypes *detached*. This plugin does exactly that, starting from
/// `batch.prototypes`, which must therefore be the prototypes as they stood *before* this
/// batch (the trainer's EMA state; if it already absorbed the batch, the batch is counted twice).
/// The trainer can keep its EMA state identical to CIDER's by applying [`update_prototypes`]
/// with the same momentum to the detached embeddings after the step.
/// With `prototype_momentum = 1` the prototypes are used as given and the dispersion term has
/// no gradient (it is then a constant that only shifts the loss value).
///
/// Classes absent from the batch keep their given prototype. Like Eqn 22 this applies no
/// `temperature / base_temperature` rescaling (CIDER's code scales `L_comp` by `0.1 / 0.07`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cider {
    /// Temperature `tau` of both terms (CIDER's default 0.1).
    pub temperature: f64,
    /// EMA factor `m` of the in-loss prototype update; keep it equal to
    /// `train.prototype_momentum` (Table 4: 0.95). `1` disables the in-loss update.
    pub prototype_momentum: f64,
    /// Weight of the compactness term. Default `10 / 7`, the authors' trainer: `w_comp = 1`
    /// on a compactness loss its code multiplies by `temperature / base_temperature = 0.1 /
    /// 0.07` (`openood/trainers/hamos_trainer.py`, `CompLoss`). The paper's prose (Appendix
    /// E.2, `L_CIDER = L_disp + lambda_c L_comp`) gives 0.5; OpenOOD's CIDER trainer 2.
    pub w_comp: f64,
    /// Weight of the dispersion term. Default 0.5, the authors' trainer (`w_disp: 0.5` in
    /// `configs/pipelines/train/train_hamos.yml`); the paper's prose and OpenOOD's CIDER: 1.
    pub w_dis: f64,
}

impl Cider {
    /// The authors' compactness weight: 1 times their `0.1 / 0.07` rescaling.
    pub const AUTHORS_W_COMP: f64 = 0.1 / 0.07;
}

impl Default for Cider {
    fn default() -> Self {
        Cider { temperature: 0.1, prototype_momentum: 0.95, w_comp: Cider::AUTHORS_W_COMP, w_dis: 0.5 }
    }
}

hamos_api::register_plugin!(
    Loss,
    Cider,
    "cider",
    "CIDER: compactness to EMA class prototypes + dispersion of the prototypes (Eqn 22)"
);

#[typetag::serde(name = "cider")]
impl ContrastiveLoss for Cider {
    fn validate(&self) -> Result<()> {
        finite_in("loss.temperature", self.temperature, 0.0, f64::INFINITY, false)?;
        finite_in("loss.prototype_momentum", self.prototype_momentum, 0.0, 1.0, true)?;
        finite_in("loss.w_comp", self.w_comp, 0.0, f64::INFINITY, true)?;
        finite_in("loss.w_dis", self.w_dis, 0.0, f64::INFINITY, true)
    }

    fn loss(&self, batch: &ContrastiveBatch) -> Result<Tensor> {
        self.validate()?;
        let (terms, _) = self.terms(batch)?;
        terms.comp.scale(self.w_comp)?.add(&terms.dis.scale(self.w_dis)?)
    }
}

/// The two CIDER terms of one batch, each of shape `[1]`.
#[derive(Debug, Clone)]
pub struct CiderTerms {
    /// Compactness `L_comp` (gradient to the embeddings only).
    pub comp: Tensor,
    /// Dispersion `L_dis` (gradient through the in-loss prototype update).
    pub dis: Tensor,
}

impl Cider {
    /// The unweighted terms and the updated prototypes `[c, d]` (with gradient).
    pub fn terms(&self, batch: &ContrastiveBatch) -> Result<(CiderTerms, Tensor)> {
        let z = &batch.embeddings;
        let (b, d) = embedding_dims("cider", z)?;
        let classes = match batch.prototypes.dims()[..] {
            [c, pd] if pd == d && c >= 2 => c,
            _ => {
                return Err(Error::shape(
                    "cider",
                    format!(
                        "prototypes must be [c >= 2, {d}] for embeddings {:?}, got {:?}",
                        z.dims(),
                        batch.prototypes.dims()
                    ),
                ))
            }
        };
        let labels = labels_for("cider", &batch.labels, b)?;
        let host = host_labels("cider", &labels, classes)?;
        let prototypes = update_prototypes_host(&batch.prototypes, z, &host, self.prototype_momentum)?;
        let inv_tau = 1.0 / self.temperature;

        // Compactness against the updated prototypes, detached as in CIDER.
        let logits = z.matmul(&prototypes.detach()?.t()?)?.scale(inv_tau)?;
        let own = logits.log_softmax(1)?.gather(1, &labels.reshape(&[b, 1])?)?;
        let comp = own.mean_all()?.neg()?;

        // Dispersion: mean over prototypes of the log mean exp-similarity to the others.
        let sims = prototypes.matmul(&prototypes.t()?)?.scale(inv_tau)?;
        let spread = masked_logsumexp_rows(&sims, &off_diagonal(&sims, classes)?)?;
        let dis = spread.mean_all()?.add_scalar(-((classes - 1) as f64).ln())?;
        Ok((CiderTerms { comp, dis }, prototypes))
    }
}

/// CIDER's in-loss prototype EMA: for each row `i` of `embeddings`, in order,
/// `mu_{y_i} <- normalize(m * mu_{y_i} + (1 - m) * z_i)`. Returns the new `[c, d]` prototypes,
/// differentiable with respect to `embeddings` (detach them to store them).
///
/// Rows of different classes do not interact, so the update runs in as many vectorised steps as
/// the largest class count of the batch: step `t` updates every class with a `t`-th row at once.
pub fn update_prototypes(
    prototypes: &Tensor,
    embeddings: &Tensor,
    labels: &Tensor,
    momentum: f64,
) -> Result<Tensor> {
    let (b, d) = embedding_dims("update_prototypes", embeddings)?;
    let classes = match prototypes.dims()[..] {
        [c, pd] if pd == d && c > 0 => c,
        _ => {
            return Err(Error::shape(
                "update_prototypes",
                format!("prototypes {:?} do not match embeddings {:?}", prototypes.dims(), embeddings.dims()),
            ))
        }
    };
    finite_in("prototype_momentum", momentum, 0.0, 1.0, true)?;
    let labels = labels_for("update_prototypes", labels, b)?;
    let host = host_labels("update_prototypes", &labels, classes)?;
    update_prototypes_host(prototypes, embeddings, &host, momentum)
}

fn update_prototypes_host(
    prototypes: &Tensor,
    z: &Tensor,
    labels: &[usize],
    momentum: f64,
) -> Result<Tensor> {
    if momentum >= 1.0 {
        return Ok(prototypes.clone());
    }
    let classes = prototypes.dims()[0];
    let mut rows_of: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (row, &label) in labels.iter().enumerate() {
        rows_of[label].push(row);
    }
    let steps = rows_of.iter().map(Vec::len).max().unwrap_or(0);
    let backend = z.backend();
    let mut current = prototypes.clone();
    for step in 0..steps {
        let rows: Vec<i64> = rows_of.iter().map(|r| r.get(step).map_or(0, |&i| i as i64)).collect();
        let hit: Vec<f32> = rows_of.iter().map(|r| if step < r.len() { 1.0 } else { 0.0 }).collect();
        let picked = z.index_select(0, &backend.from_i64(&rows, &[classes])?)?;
        let moved = current.scale(momentum)?.add(&picked.scale(1.0 - momentum)?)?.l2_normalize(1)?;
        current = backend.from_f32(&hit, &[classes, 1])?.where_mask(&moved, &current)?;
    }
    Ok(current)
}
