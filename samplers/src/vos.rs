//! The VOS baseline (Du et al., 2022): class-conditional Gaussians, keep the least likely draws.

use hamos_api::config::{finite_in, positive};
use hamos_api::{IdBarrier, OodnessEnergy, Result, Sampler, Synthesis, SynthesisInput};
use rand::RngCore;
use rand_distr::{ChiSquared, Distribution};
use serde::{Deserialize, Serialize};

use crate::baseline::{check_bank, cholesky, package};

/// Fits `N(mu_c, Sigma)` per class (class means, one shared covariance plus `ridge * I`), draws
/// `candidates` samples per class and keeps the `keep_per_class` of lowest likelihood, then
/// projects them to the unit sphere (HamOS embeddings live there; VOS itself samples in
/// feature space).
///
/// A draw `mu + L eps`'s likelihood depends only on `|eps|^2 ~ chi^2_d`, and the direction of
/// `eps` is independent of it, so the lowest-likelihood draws are sampled exactly and cheaply:
/// `candidates` chi-square radii, the largest `keep_per_class` kept, uniform directions for those.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Vos {
    /// Gaussian draws per class (VOS: 10000).
    pub candidates: usize,
    /// Outliers kept per class (default 20, the `N_adj x R` of HamOS).
    pub keep_per_class: usize,
    /// Ridge added to the covariance, relative to its mean diagonal.
    pub ridge: f64,
}

impl Default for Vos {
    fn default() -> Self {
        Vos { candidates: 10000, keep_per_class: 20, ridge: 1e-4 }
    }
}

hamos_api::register_plugin!(
    Sampler,
    Vos,
    "vos",
    "VOS baseline: least likely draws of class-conditional Gaussians (Du et al. 2022)"
);

#[typetag::serde(name = "vos")]
impl Sampler for Vos {
    fn validate(&self) -> Result<()> {
        positive("sampler.candidates", self.candidates)?;
        positive("sampler.keep_per_class", self.keep_per_class)?;
        if self.keep_per_class > self.candidates {
            return Err(hamos_api::Error::invalid("sampler.keep_per_class", "must not exceed `candidates`"));
        }
        finite_in("sampler.ridge", self.ridge, 0.0, 1e6, true)
    }

    fn synthesize(
        &self,
        input: &SynthesisInput<'_>,
        energy: &dyn OodnessEnergy,
        _barrier: &dyn IdBarrier,
        rng: &mut dyn RngCore,
    ) -> Result<Synthesis> {
        let bank = input.bank;
        check_bank(bank, "vos")?;
        let (classes, capacity, dim) = (bank.num_classes(), bank.capacity(), bank.dim());
        let counts: Vec<f32> = bank.counts().iter().map(|&n| n as f32).collect();
        let backend = bank.embeddings().backend();
        let means = bank.embeddings().sum(1, true)?.div(&backend.from_f32(&counts, &[classes, 1, 1])?)?;
        let valid = bank.valid_mask()?.reshape(&[classes, capacity, 1])?;
        let centred = bank.embeddings().sub(&means)?.mul(&valid)?.reshape(&[classes * capacity, dim])?;
        let total: usize = bank.counts().iter().sum();
        let covariance = centred.t()?.matmul(&centred)?.scale(1.0 / total as f64)?.to_vec_f32()?;
        let mut covariance: Vec<f64> = covariance.into_iter().map(f64::from).collect();
        let mean_diag = (0..dim).map(|i| covariance[i * dim + i]).sum::<f64>() / dim as f64;
        let ridge = self.ridge * if mean_diag > 0.0 { mean_diag } else { 1.0 };
        (0..dim).for_each(|i| covariance[i * dim + i] += ridge);
        let factor = cholesky(&covariance, dim)?;

        let chi = ChiSquared::new(dim as f64).map_err(|e| hamos_api::Error::Data(format!("vos: {e}")))?;
        let means = means.to_vec_f32()?;
        let mut rows = Vec::with_capacity(classes * self.keep_per_class * dim);
        for class in 0..classes {
            let mut radii: Vec<f64> = (0..self.candidates).map(|_| chi.sample(rng).sqrt()).collect();
            radii.sort_by(|a, b| b.total_cmp(a));
            for &radius in &radii[..self.keep_per_class] {
                let direction = hamos_api::backend::randn_host(dim, 0.0, 1.0, rng);
                let norm = direction.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt().max(1e-300);
                let eps: Vec<f64> = direction.iter().map(|&x| f64::from(x) * radius / norm).collect();
                let point: Vec<f64> = (0..dim)
                    .map(|i| {
                        let offset: f64 = (0..=i).map(|k| factor[i * dim + k] * eps[k]).sum();
                        f64::from(means[class * dim + i]) + offset
                    })
                    .collect();
                let n = point.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-300);
                rows.extend(point.iter().map(|x| (x / n) as f32));
            }
        }
        let outliers = backend.from_f32(&rows, &[classes * self.keep_per_class, dim])?;
        package(outliers, self.keep_per_class, bank, energy, Vec::new())
    }
}
