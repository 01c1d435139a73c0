//! The invariance check a plugin author runs on their own kernel
//! (`hamos_samplers::invariance::vmf_invariance`). `midpoint_jitter` accepts every finite
//! proposal without looking at the target (its Metropolis-Hastings log ratio is 0), so it is not
//! an MCMC sampler of the OOD-ness density, and the check says so: its chains forget the vMF
//! target and spread over the sphere. The built-in random walk, with the same proposal but the
//! correct ratio, keeps the target.
#![allow(clippy::unwrap_used)] // test helpers: a failure there is a test failure

use std::sync::Arc;

use hamos_api::Backend;
use hamos_example_plugin::MidpointJitter;
use hamos_samplers::invariance::{vmf_invariance, InvarianceOptions};
use hamos_samplers::mcmc::{AcceptRule, Chains};
use hamos_samplers::random_walk::RandomWalk;

#[test]
fn the_invariance_check_tells_a_target_blind_kernel_from_a_correct_one() {
    let backend: Arc<dyn Backend> = Arc::new(hamos_candle::CandleBackend::cpu());
    let chains = Chains { step_size: 0.8, ..Chains::default() };
    let options = InvarianceOptions::default();
    let jitter = MidpointJitter { chains };
    let check = vmf_invariance(&jitter, &backend, AcceptRule::Metropolis, &options).unwrap();
    assert!(!check.holds(6.0), "midpoint_jitter looked invariant: {check}");
    assert!(check.measured < check.expected, "{check}");
    let walk = RandomWalk { chains };
    let check = vmf_invariance(&walk, &backend, AcceptRule::Metropolis, &options).unwrap();
    assert!(check.holds(4.0), "random_walk: {check}");
}

#[test]
fn the_custom_sampler_registers_under_its_typetag_name() {
    hamos_api::registry::check_typetag_names().unwrap();
    assert!(hamos_api::registry::plugin_names(hamos_api::PluginKind::Sampler).contains(&"midpoint_jitter"));
}
