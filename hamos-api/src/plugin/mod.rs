//! The plugin traits. Each is object-safe and registered by name through `typetag` (tag `kind`):
//! a plugin's struct *is* its config (serde, `Default` from the paper's Table 4,
//! `deny_unknown_fields`), and [`validate`](Sampler::validate) runs before anything is built.

mod backbone;
mod bank;
mod barrier;
mod energy;
mod loss;
mod moments;
mod sampler;
mod scorer;

pub use backbone::{Backbone, Module};
pub use bank::{ChainPairs, ClassBank};
pub use barrier::{check_starts, Admission, IdBarrier, Thresholds};
pub use energy::{EnergyEval, OodnessEnergy};
pub use loss::{ContrastiveBatch, ContrastiveLoss};
pub use moments::ClassMoments;
pub use sampler::{OutlierTag, RoundDiagnostics, Sampler, Synthesis, SynthesisInput};
pub use scorer::{Consumes, FittedScorer, InputModel, LinearHead, ModelInputs, ScoreInput, Scorer};
