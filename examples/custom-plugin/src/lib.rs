//! # An example HamOS plugin crate
//!
//! Defines the sampler `midpoint_jitter` in a crate of its own: a struct that is its config, a
//! `typetag` impl of [`hamos_api::Sampler`] and one [`hamos_api::register_plugin!`] line. A
//! binary that links this crate (`use hamos_example_plugin as _;`) can select it with
//! `[sampler] kind = "midpoint_jitter"` in a config file or `HAMOS_SAMPLER__KIND=midpoint_jitter`.
//!
//! The sampler walks from the chain starts of Algorithm 1 with tangent Gaussian steps and no
//! Metropolis-Hastings test, keeping only what the ID barrier admits: a simple baseline.
//!
//! ```
//! use hamos_api::Sampler;
//! use hamos_example_plugin as _; // links the registration
//! let sampler: Box<dyn Sampler> = toml::from_str("kind = \"midpoint_jitter\"\nstep_size = 0.2")
//! #   .map_err(|e| hamos_api::Error::Config(e.to_string()))?;
//! sampler.validate()?;
//! # Ok::<(), hamos_api::Error>(())
//! ```

use hamos_api::config::{finite_in, positive};
use hamos_api::{
    ChainPairs, IdBarrier, OodnessEnergy, OutlierTag, Result, RoundDiagnostics, Sampler, Synthesis,
    SynthesisInput, Tensor,
};
use hamos_samplers::chains::{chain_starts, geodesic_flow, project_tangent};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Tangent Gaussian jitter from each chain start, barrier-filtered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MidpointJitter {
    /// Rounds of jitter.
    pub rounds: usize,
    /// Standard deviation of each tangent step (radians).
    pub step_size: f64,
    /// Adjacent classes per class.
    pub n_adj: usize,
}

impl Default for MidpointJitter {
    fn default() -> Self {
        MidpointJitter { rounds: 5, step_size: 0.1, n_adj: 4 }
    }
}

hamos_api::register_plugin!(
    Sampler,
    MidpointJitter,
    "midpoint_jitter",
    "example plugin crate: tangent Gaussian jitter from the chain starts, barrier-filtered"
);

#[typetag::serde(name = "midpoint_jitter")]
impl Sampler for MidpointJitter {
    fn validate(&self) -> Result<()> {
        positive("sampler.rounds", self.rounds)?;
        positive("sampler.n_adj", self.n_adj)?;
        finite_in("sampler.step_size", self.step_size, 0.0, 10.0, false)
    }

    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis> {
        let starts = chain_starts(input.prototypes, self.n_adj)?;
        let backend = starts.positions.backend();
        let pairs = ChainPairs::new(&backend, starts.pairs.clone())?;
        // One threshold per chain: chain `i` is judged against start `i`.
        let mut thresholds = barrier.thresholds(&starts.positions, input.bank)?;
        let start_of: Vec<usize> = (0..starts.pairs.len()).collect();
        let chains = pairs.len();
        let mut z = starts.positions.clone();
        let (mut outputs, mut tags, mut rounds) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..self.rounds {
            let noise = backend.randn(&z.dims(), 0.0, 1.0, rng)?;
            let (proposal, _) = geodesic_flow(&z, &project_tangent(&z, &noise)?, self.step_size)?;
            let admission = match thresholds.as_mut() {
                Some(t) => Some(barrier.admits(&proposal, &start_of, t, input.bank)?),
                None => None,
            };
            let (checks, exact) = match &admission {
                Some(a) => (chains + if round == 0 { chains } else { 0 }, a.exact_evaluations),
                None => (0, 0),
            };
            let admitted = admission.map(|a| a.mask.reshape(&[chains, 1])).transpose()?;
            let accepted = match &admitted {
                Some(mask) => mask.sum_all()?.to_scalar_f32()? as f64,
                None => chains as f64,
            };
            z = match admitted {
                Some(mask) => mask.where_mask(&proposal, &z)?,
                None => proposal,
            };
            let oodness = energy.energy(&z, &pairs, input.bank)?.neg()?.exp()?.mean_all()?.to_scalar_f32()?;
            outputs.push(z.clone());
            tags.extend(starts.pairs.iter().enumerate().map(|(chain, &(class_u, class_v))| OutlierTag {
                chain,
                class_u,
                class_v,
                round,
            }));
            rounds.push(RoundDiagnostics {
                round,
                active_chains: chains,
                acceptance_rate: accepted / chains as f64,
                barrier_rejections: chains - accepted as usize,
                mean_oodness: f64::from(oodness),
                barrier_checks: checks,
                barrier_exact: exact + checks.saturating_sub(chains),
                energy_evaluations: chains,
                ..RoundDiagnostics::default()
            });
        }
        let outliers = Tensor::cat(&outputs.iter().collect::<Vec<_>>(), 0)?;
        Ok(Synthesis { outliers, tags, rounds, stopped_chains: Vec::new(), notes: starts.notes })
    }
}
