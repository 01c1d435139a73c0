//! # hamos-scorers: inference-time OOD scores
//!
//! Plugins of kind `scorer` ([`hamos_api::Scorer`]), written against [`hamos_api::Tensor`];
//! every score is "higher = more in-distribution":
//! - `knn` ([`KnnScorer`], the HamOS default, Section 3.4): minus the distance to the k-th
//!   nearest ID training embedding;
//! - `mahalanobis` ([`MahalanobisScorer`], Eqn 21): minus the squared Mahalanobis distance to
//!   the closest class mean under a tied covariance (needs training labels);
//! - `msp` ([`MspScorer`], Eqn 15), `energy` ([`EnergyScorer`], Eqn 17) and `maxlogit`
//!   ([`MaxLogitScorer`], Hendrycks et al. 2022): from the classifier logits;
//! - `ash` ([`AshScorer`], ASH-S) and `scale` ([`ScaleScorer`]): reshape the penultimate
//!   features, recompute the logits with the classification layer and take their energy;
//! - `relation` ([`RelationScorer`], Kim et al. 2023): thresholded feature-and-probability
//!   similarity edges to the ID training samples;
//! - `odin` ([`OdinScorer`], Liang et al. 2018): the tempered maximum softmax of the input
//!   perturbed along the sign of its input gradient (needs the images and the model,
//!   [`hamos_api::ScoreInput::inputs`]).
//!
//! Each says what it reads ([`hamos_api::Scorer::consumes`]) and whether it uses training data
//! ([`hamos_api::Scorer::fitted`]); an input lacking a consumed part is an error naming the
//! scorer and the part, never a panic.
//!
//! ```
//! use hamos_api::{Backend, ScoreInput, Scorer};
//! use hamos_scorers::KnnScorer;
//! let backend = hamos_candle::CandleBackend::cpu();
//! let train = ScoreInput {
//!     embeddings: backend.from_f32(&[1.0, 0.0, 0.9, 0.1, 0.8, 0.2], &[3, 2])?.l2_normalize(1)?,
//!     logits: None,
//!     labels: None,
//!     features: None,
//!     head: None,
//!     inputs: None,
//! };
//! let fitted = KnnScorer { k: 2, ..KnnScorer::default() }.fit(&train)?;
//! let test = ScoreInput {
//!     embeddings: backend.from_f32(&[1.0, 0.05, 0.0, 1.0], &[2, 2])?,
//!     logits: None,
//!     labels: None,
//!     features: None,
//!     head: None,
//!     inputs: None,
//! };
//! let scores = fitted.score(&test)?.to_vec_f32()?;
//! assert!(scores[0] > scores[1], "the point near the training data is more ID");
//! # Ok::<(), hamos_api::Error>(())
//! ```

pub mod ash;
mod common;
pub mod energy;
pub mod knn;
mod linalg;
pub mod mahalanobis;
pub mod maxlogit;
pub mod msp;
pub mod odin;
pub mod relation;
pub mod scale;
mod shaping;

pub use ash::AshScorer;
pub use energy::EnergyScorer;
pub use knn::KnnScorer;
pub use mahalanobis::MahalanobisScorer;
pub use maxlogit::MaxLogitScorer;
pub use msp::MspScorer;
pub use odin::OdinScorer;
pub use relation::RelationScorer;
pub use scale::ScaleScorer;
