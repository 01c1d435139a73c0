//! Each MCMC sampler leaves a known target invariant: started from exact draws of a vMF
//! distribution on S^2, the chains' mean resultant length stays at its closed form
//! `A_3(kappa) = coth(kappa) - 1 / kappa`, and accepting every proposal breaks it.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

mod common;

use std::sync::Arc;

use common::{backends, clustered_bank, VmfEnergy};
use hamos_api::Backend;
use hamos_api::ChainPairs;
use hamos_samplers::barrier::none::NoBarrier;
use hamos_samplers::hmc::Hmc;
use hamos_samplers::mala::Mala;
use hamos_samplers::mcmc::{run_chains, AcceptRule, Chains, Kernel, Target};
use hamos_samplers::random_walk::RandomWalk;
use hamos_samplers::rmhmc::{Mmala, Rmhmc};
use rand::Rng;

const KAPPA: f64 = 3.0;
const CHAINS: usize = 3000;

/// Exact vMF(e1, kappa) draws on S^2 (Wood's inversion, closed form in 3 dimensions).
fn vmf_draws(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = hamos_api::rng_from_seed(seed);
    (0..n)
        .flat_map(|_| {
            let u: f64 = rng.random();
            let w = 1.0 + (u + (1.0 - u) * (-2.0 * KAPPA).exp()).ln() / KAPPA;
            let phi = std::f64::consts::TAU * rng.random::<f64>();
            let r = (1.0 - w * w).max(0.0).sqrt();
            [w as f32, (r * phi.cos()) as f32, (r * phi.sin()) as f32]
        })
        .collect()
}

/// Mean of `e1 . z` after `rounds` rounds, and its standard error.
fn mean_resultant(
    backend: &Arc<dyn Backend>,
    kernel: &dyn Kernel,
    rule: AcceptRule,
    rounds: usize,
) -> (f64, f64) {
    let bank = clustered_bank(backend, 2, 4, 3, 0.1, 0).unwrap();
    let pairs = ChainPairs::new(backend, vec![(0, 1); CHAINS]).unwrap();
    let energy = VmfEnergy { kappa: KAPPA, mean: vec![1.0, 0.0, 0.0] };
    let target = Target { energy: &energy, pairs: &pairs, bank: &bank };
    let starts = backend.from_f32(&vmf_draws(CHAINS, 17), &[CHAINS, 3]).unwrap();
    let mut rng = hamos_api::rng_from_seed(23);
    let out = run_chains(kernel, &target, &NoBarrier {}, &starts, rounds, rule, &mut rng).unwrap();
    let rows = out.outliers.to_rows_f32().unwrap();
    let last: Vec<f64> = rows[rows.len() - CHAINS..].iter().map(|r| f64::from(r[0])).collect();
    let mean = last.iter().sum::<f64>() / CHAINS as f64;
    let var = last.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / (CHAINS - 1) as f64;
    (mean, (var / CHAINS as f64).sqrt())
}

fn check(name: &str, kernel: &dyn Kernel) {
    let expected = 1.0 / KAPPA.tanh() - 1.0 / KAPPA;
    for backend in backends() {
        let on = backend.name();
        let (mean, se) = mean_resultant(&backend, kernel, AcceptRule::Metropolis, 8);
        assert!(
            (mean - expected).abs() < 4.0 * se,
            "{name} on {on}: mean {mean:.4} vs {expected:.4} (se {se:.4})"
        );
        let (wrong, se) = mean_resultant(&backend, kernel, AcceptRule::AlwaysAccept, 8);
        assert!(
            (wrong - expected).abs() > 6.0 * se,
            "{name} on {on}: accepting everything went unnoticed: {wrong:.4} (se {se:.4})"
        );
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
