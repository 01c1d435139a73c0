use std::fmt::Debug;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::{ClassBank, IdBarrier, OodnessEnergy};
use crate::error::Result;
use crate::tensor::Tensor;

/// An outlier sampler (Algorithm 1 and its variants, or a baseline such as VOS or NPOS).
///
/// The caller passes the RNG: one seed makes a run reproducible. Required:
/// [`synthesize`](Self::synthesize); provided: [`validate`](Self::validate).
#[typetag::serde(tag = "kind")]
pub trait Sampler: Debug + Send + Sync {
    /// Checks the config; called before any run starts.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Synthesizes one mini-batch of outliers.
    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis>;
}

/// What a sampler synthesizes from.
#[derive(Debug, Clone, Copy)]
pub struct SynthesisInput<'a> {
    /// The class-conditional buffer of unit-norm ID embeddings.
    pub bank: &'a ClassBank,
    /// Unit-norm class prototypes `[c, d]`.
    pub prototypes: &'a Tensor,
}

/// Where an outlier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierTag {
    /// Chain index.
    pub chain: usize,
    /// The chain's first class.
    pub class_u: usize,
    /// The chain's second class (equal to `class_u` for per-class baselines).
    pub class_v: usize,
    /// Synthesis round, from 0.
    pub round: usize,
}

/// Per-round diagnostics of a sampler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundDiagnostics {
    /// Round, from 0.
    pub round: usize,
    /// Chains still running in this round.
    pub active_chains: usize,
    /// Fraction of active chains whose proposal was accepted (MH and barrier both passed).
    pub acceptance_rate: f64,
    /// Proposals that passed Metropolis-Hastings but were rejected by the ID barrier.
    pub barrier_rejections: usize,
    /// Mean `|H(new) - H(old)|` (the MH log-ratio magnitude) over active chains.
    pub mean_abs_delta_h: f64,
    /// Chains whose proposal went non-finite in this round (they are stopped).
    pub non_finite: usize,
    /// Mean angle (radians) between the position before and after the round.
    pub mean_angular_step: f64,
    /// Mean OOD-ness `P = exp(-U)` at the positions after the round.
    pub mean_oodness: f64,
    /// Points the ID barrier evaluated: the proposals that passed Metropolis-Hastings (the
    /// others need no verdict), plus, in round 0, the distinct chain starts that set the
    /// thresholds, plus starts whose threshold a verdict of this round had to make exact.
    pub barrier_checks: usize,
    /// Of `barrier_checks`, the points whose ID density was computed exactly (the others were
    /// decided by the barrier's cheaper bounds, with the same verdict).
    pub barrier_exact: usize,
    /// Points at which the OOD-ness energy was evaluated (chains times evaluations; round 0
    /// includes the starts).
    pub energy_evaluations: usize,
}

/// One synthesized mini-batch.
#[derive(Debug, Clone)]
pub struct Synthesis {
    /// Unit-norm outliers `[n, d]`, row `i` tagged by `tags[i]`.
    pub outliers: Tensor,
    /// Provenance of each row of `outliers`.
    pub tags: Vec<OutlierTag>,
    /// Diagnostics per round.
    pub rounds: Vec<RoundDiagnostics>,
    /// Chains stopped because they went non-finite: `(chain, round)`.
    pub stopped_chains: Vec<(usize, usize)>,
    /// Notes from the energy and the sampler (e.g. "k reduced to 50 for class 3").
    pub notes: Vec<String>,
}
