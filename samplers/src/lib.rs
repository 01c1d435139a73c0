//! # hamos-samplers: outlier synthesis on the hypersphere
//!
//! Plugins for Algorithm 1 of HamOS, each written once against [`hamos_api::Tensor`]:
//! - energy `knn` (Eqns 1-4) and barriers `vmf_kde` (Eqns 5, 10-12) and `none`;
//! - MCMC samplers `hmc`, `mala`, `mmala`, `rmhmc`, `random_walk`, sharing one round loop
//!   ([`mcmc::run_chains`]) that applies Metropolis-Hastings and the barrier, stops non-finite
//!   chains and records per-round diagnostics. Each is a [`mcmc::Kernel`] (proposal and
//!   Metropolis-Hastings ratio) registered with [`register_kernel!`]; the sphere's geometry is
//!   in [`sphere`];
//! - baselines `vos` and `npos`.
//!
//! ```
//! use hamos_api::{Backend, ClassBank, IdBarrier, OodnessEnergy, Sampler, SynthesisInput};
//! use hamos_samplers::{barrier::vmf_kde::VmfKdeBarrier, energy::knn::KnnEnergy, hmc::Hmc};
//! let backend: std::sync::Arc<dyn Backend> = std::sync::Arc::new(hamos_candle::CandleBackend::cpu());
//! let mut rng = hamos_api::rng_from_seed(7);
//! // Three classes of 20 unit vectors in 8 dimensions, around three axes.
//! let (mut rows, mut labels) = (Vec::new(), Vec::new());
//! for class in 0..3 {
//!     let noise = hamos_api::backend::randn_host(20 * 8, 0.0, 0.1, &mut rng);
//!     for row in noise.chunks(8) {
//!         let mut v = row.to_vec();
//!         v[class] += 1.0;
//!         let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
//!         rows.extend(v.iter().map(|x| x / n));
//!         labels.push(class);
//!     }
//! }
//! let bank = ClassBank::from_rows(&backend, &rows, 8, &labels, 3, 20)?;
//! let prototypes = bank.prototypes()?;
//! let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
//! let energy = KnnEnergy { k: 5 };
//! let out = Hmc::default().synthesize(&input, &energy, &VmfKdeBarrier::default(), &mut rng)?;
//! assert_eq!(out.rounds.len(), 5);
//! # Ok::<(), hamos_api::Error>(())
//! ```

pub mod barrier;
mod baseline;
pub mod chains;
pub mod energy;
pub mod hmc;
pub mod invariance;
pub mod mala;
pub mod mcmc;
pub mod npos;
pub mod random_walk;
pub mod rmhmc;
pub mod sphere;
pub mod vos;

#[doc(hidden)]
/// What [`register_kernel!`] expands to needs, reachable from the caller's crate.
pub mod __private {
    pub use hamos_api;
    pub use rand;
}
