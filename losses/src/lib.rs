//! # hamos-losses: ID contrastive losses and the OOD-discernment loss
//!
//! Plugins of kind `loss` ([`hamos_api::ContrastiveLoss`]), each written once against
//! [`hamos_api::Tensor`] so that it trains on every backend:
//! - `cider` ([`Cider`], the HamOS default): compactness + dispersion with EMA prototypes
//!   updated inside the loss, as in CIDER (Eqn 22);
//! - `supcon` ([`SupCon`]): supervised contrastive loss over all pairs of the batch;
//! - `simclr` ([`SimClr`]): NT-Xent over the two views of each image;
//! - `ce_only` ([`CeOnly`]): zero, the cross-entropy-only baseline of Table 12.
//!
//! Plus the OOD-discernment terms for the synthesized outliers: [`ood_discernment_loss`], Eqn 7
//! (read its note on the sign), [`released_ood_loss`] (the authors' released trainer's term)
//! and [`outlier_negative_loss`] (outliers as extra compactness negatives, beyond the paper),
//! and [`cider::update_prototypes`], CIDER's prototype EMA for the trainer.
//!
//! ```
//! use hamos_api::{Backend, ContrastiveBatch, ContrastiveLoss};
//! use hamos_losses::Cider;
//! let backend = hamos_candle::CandleBackend::cpu();
//! // Four unit embeddings of two classes, and the two class prototypes.
//! let z = backend.from_f32(&[1.0, 0.1, 0.9, 0.2, 0.1, 1.0, 0.2, 0.9], &[4, 2])?.l2_normalize(1)?;
//! let batch = ContrastiveBatch {
//!     embeddings: z,
//!     labels: backend.from_i64(&[0, 0, 1, 1], &[4])?,
//!     prototypes: backend.from_f32(&[1.0, 0.0, 0.0, 1.0], &[2, 2])?,
//! };
//! let loss = Cider::default().loss(&batch)?;
//! assert_eq!(loss.dims(), vec![1]);
//! assert!(loss.to_scalar_f32()?.is_finite());
//! # Ok::<(), hamos_api::Error>(())
//! ```

pub mod ce_only;
pub mod cider;
mod common;
pub mod ood;
pub mod simclr;
pub mod supcon;

pub use ce_only::CeOnly;
pub use cider::Cider;
pub use ood::{ood_discernment_loss, outlier_negative_loss, released_ood_loss, RELEASED_BASE_TEMPERATURE};
pub use simclr::SimClr;
pub use supcon::SupCon;
