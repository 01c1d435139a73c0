//! The NPOS baseline (Tao et al., 2023): Gaussian noise around boundary ID embeddings chosen by
//! k-NN distance, keeping the candidates farthest from the class.

use hamos_api::config::{finite_in, positive};
use hamos_api::{IdBarrier, OodnessEnergy, Result, Sampler, Synthesis, SynthesisInput, Tensor};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::baseline::{check_bank, package};

/// Per class: the `boundary_per_class` embeddings with the largest distance to their k-th
/// nearest class neighbour are the boundary; each gets `samples_per_boundary` draws of
/// `normalize(b + noise_std * N(0, I))`; the `keep_per_class` draws farthest (k-th neighbour
/// distance) from the class are kept. `k` defaults to Table 4's 200, as the HamOS energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Npos {
    /// Which neighbour measures boundary-ness and OOD-ness.
    pub k: usize,
    /// Boundary embeddings per class.
    pub boundary_per_class: usize,
    /// Gaussian draws around each boundary embedding.
    pub samples_per_boundary: usize,
    /// Standard deviation of the noise.
    pub noise_std: f64,
    /// Outliers kept per class (default 20, the `N_adj x R` of HamOS).
    pub keep_per_class: usize,
}

impl Default for Npos {
    fn default() -> Self {
        Npos { k: 200, boundary_per_class: 10, samples_per_boundary: 20, noise_std: 0.1, keep_per_class: 20 }
    }
}

hamos_api::register_plugin!(
    Sampler,
    Npos,
    "npos",
    "NPOS baseline: Gaussian noise around k-NN boundary embeddings (Tao et al. 2023)"
);

/// Distance from each row of `queries` to its `k`-th nearest row of `reference` (`skip_self`
/// skips the zero distance of a row to itself), `[m]`.
fn kth_distance(queries: &Tensor, reference: &Tensor, k: usize, skip_self: bool) -> Result<Tensor> {
    let width = reference.dim("npos", 0)?;
    let wanted = (k + usize::from(skip_self)).clamp(1, width);
    let (values, _) = queries.pairwise_sq_dists(reference)?.topk(wanted, 1, false)?;
    let rows = values.dim("npos", 0)?;
    values.narrow(1, wanted - 1, 1)?.sqrt()?.reshape(&[rows])
}

#[typetag::serde(name = "npos")]
impl Sampler for Npos {
    fn validate(&self) -> Result<()> {
        positive("sampler.k", self.k)?;
        positive("sampler.boundary_per_class", self.boundary_per_class)?;
        positive("sampler.samples_per_boundary", self.samples_per_boundary)?;
        positive("sampler.keep_per_class", self.keep_per_class)?;
        if self.keep_per_class > self.boundary_per_class * self.samples_per_boundary {
            return Err(hamos_api::Error::invalid(
                "sampler.keep_per_class",
                "must not exceed boundary_per_class * samples_per_boundary",
            ));
        }
        finite_in("sampler.noise_std", self.noise_std, 0.0, 100.0, false)
    }

    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        _barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis> {
        let bank = input.bank;
        check_bank(bank, "npos")?;
        let (capacity, dim) = (bank.capacity(), bank.dim());
        let backend = bank.embeddings().backend();
        let mut kept = Vec::with_capacity(bank.num_classes());
        let mut notes = Vec::new();
        for (class, &count) in bank.counts().iter().enumerate() {
            let members =
                bank.embeddings().narrow(0, class, 1)?.reshape(&[capacity, dim])?.narrow(0, 0, count)?;
            let boundary_count = self.boundary_per_class.min(count);
            if boundary_count < self.boundary_per_class {
                notes.push(format!("npos: class {class} has only {count} embeddings for the boundary"));
            }
            let boundary_score = kth_distance(&members, &members, self.k, true)?;
            let (_, boundary_idx) = boundary_score.reshape(&[1, count])?.topk(boundary_count, 1, true)?;
            // Index order, not score order: near-equal scores may sort differently on another
            // backend, and the noise draws must meet the same centres everywhere.
            let mut boundary_idx = indices(&boundary_idx)?;
            boundary_idx.sort_unstable();
            let repeated: Vec<usize> = boundary_idx
                .into_iter()
                .flat_map(|i| std::iter::repeat_n(i, self.samples_per_boundary))
                .collect();
            let centres = members.gather_rows(&repeated)?;
            let noise = backend.randn(&centres.dims(), 0.0, self.noise_std as f32, rng)?;
            let candidates = centres.add(&noise)?.l2_normalize(1)?;
            let keep = self.keep_per_class.min(repeated.len());
            let score = kth_distance(&candidates, &members, self.k, false)?;
            let (_, best) = score.reshape(&[1, repeated.len()])?.topk(keep, 1, true)?;
            let mut best = indices(&best)?;
            best.sort_unstable();
            let mut chosen = candidates.gather_rows(&best)?;
            if keep < self.keep_per_class {
                // Pad by repeating the farthest candidates so every class yields the same count.
                let idx: Vec<usize> = (0..self.keep_per_class).map(|i| i % keep).collect();
                chosen = chosen.gather_rows(&idx)?;
            }
            kept.push(chosen);
        }
        let outliers = Tensor::cat(&kept.iter().collect::<Vec<_>>(), 0)?;
        package(outliers, self.keep_per_class, bank, energy, notes)
    }
}

/// The positions a `topk` returned, as host indices.
fn indices(positions: &Tensor) -> Result<Vec<usize>> {
    positions
        .to_vec_i64()?
        .into_iter()
        .map(|i| {
            usize::try_from(i)
                .map_err(|_| hamos_api::Error::shape("npos", format!("negative index {i} from topk")))
        })
        .collect()
}
