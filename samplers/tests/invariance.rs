//! Each MCMC sampler leaves a known target invariant (`hamos_samplers::invariance`): started
//! from exact draws of a vMF distribution on S^2, the chains' mean resultant length stays at its
//! closed form `A_3(kappa) = coth(kappa) - 1 / kappa`, and accepting every proposal breaks it.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use common::backends;
use hamos_samplers::hmc::Hmc;
use hamos_samplers::invariance::{vmf_invariance, InvarianceOptions};
use hamos_samplers::mala::Mala;
use hamos_samplers::mcmc::{AcceptRule, Chains, Kernel};
use hamos_samplers::random_walk::RandomWalk;
use hamos_samplers::rmhmc::{Mmala, Rmhmc};

fn check(name: &str, kernel: &dyn Kernel) {
    let options = InvarianceOptions::default();
    for backend in backends() {
        let on = backend.name();
        let kept = vmf_invariance(kernel, &backend, AcceptRule::Metropolis, &options).unwrap();
        assert!(kept.holds(4.0), "{name} on {on}: {kept}");
        let broken = vmf_invariance(kernel, &backend, AcceptRule::AlwaysAccept, &options).unwrap();
        assert!(!broken.holds(6.0), "{name} on {on}: accepting everything went unnoticed: {broken}");
    }
}

fn step(step_size: f64) -> Chains {
    Chains { step_size, ..Chains::default() }
}

#[test]
fn hmc_keeps_vmf_invariant() {
    check("hmc", &Hmc { chains: step(0.9), leapfrog_steps: 3 });
}

#[test]
fn mala_keeps_vmf_invariant() {
    check("mala", &Mala { chains: step(1.2) });
}

#[test]
fn random_walk_keeps_vmf_invariant() {
    check("random_walk", &RandomWalk { chains: step(0.8) });
}

#[test]
fn rmhmc_keeps_vmf_invariant() {
    check("rmhmc", &Rmhmc { chains: step(0.9), leapfrog_steps: 3, history: 2, shrinkage: 0.3 });
}

#[test]
fn mmala_keeps_vmf_invariant() {
    check("mmala", &Mmala { chains: step(1.2), history: 2, shrinkage: 0.3 });
}

#[test]
fn the_gradient_check_accepts_the_knn_energy_and_catches_a_wrong_gradient() {
    use hamos_api::{ChainPairs, EnergyEval, OodnessEnergy, Tensor};
    use hamos_samplers::invariance::energy_gradient_error;

    /// The knn energy with its gradient halved.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct HalvedGradient(hamos_samplers::energy::knn::KnnEnergy);
    #[typetag::serde(name = "test_halved_gradient")]
    impl OodnessEnergy for HalvedGradient {
        fn energy_and_grad(
            &self,
            z: &Tensor,
            pairs: &ChainPairs,
            bank: &hamos_api::ClassBank,
        ) -> hamos_api::Result<EnergyEval> {
            let eval = self.0.energy_and_grad(z, pairs, bank)?;
            Ok(EnergyEval { grad: eval.grad.scale(0.5)?, ..eval })
        }
    }

    for backend in backends() {
        let bank = common::clustered_bank(&backend, 3, 40, 8, 0.3, 5).unwrap();
        let pairs = ChainPairs::new(&backend, vec![(0, 1), (1, 2), (0, 2), (2, 0), (1, 0), (2, 1)]).unwrap();
        let mut rng = hamos_api::rng_from_seed(9);
        let raw = hamos_api::backend::randn_host(6 * 8, 0.0, 1.0, &mut rng);
        let rows: Vec<f32> = raw.chunks(8).flat_map(common::unit).collect();
        let z = backend.from_f32(&rows, &[6, 8]).unwrap();
        let knn = hamos_samplers::energy::knn::KnnEnergy { k: 5 };
        let good = energy_gradient_error(&knn, &z, &pairs, &bank, 1e-3, &mut rng).unwrap();
        assert!(good < 2e-2, "knn on {}: {good}", backend.name());
        let bad = energy_gradient_error(&HalvedGradient(knn), &z, &pairs, &bank, 1e-3, &mut rng).unwrap();
        assert!(bad > 0.3, "a halved gradient went unnoticed on {}: {bad}", backend.name());
    }
}
