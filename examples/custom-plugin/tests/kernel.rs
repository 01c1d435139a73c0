//! The example kernel is selected by name from TOML and runs in the shared round loop, with
//! the built-in samplers' per-round diagnostics.
#![allow(clippy::unwrap_used)] // a failure there is a test failure

use std::sync::Arc;

use hamos_api::{Backend, ClassBank, Sampler, SynthesisInput};
use hamos_example_plugin as _;
use hamos_samplers::{barrier::vmf_kde::VmfKdeBarrier, energy::knn::KnnEnergy};

#[test]
fn selected_from_toml_runs_with_diagnostics() {
    let sampler: Box<dyn Sampler> =
        toml::from_str("kind = \"midpoint_jitter\"\nrounds = 4\nstep_size = 0.3\nn_adj = 2").unwrap();
    sampler.validate().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(hamos_candle::CandleBackend::cpu());
    let mut rng = hamos_api::rng_from_seed(1);
    let (classes, per_class, dim) = (4, 30, 8);
    let rows: Vec<f32> = hamos_api::backend::randn_host(classes * per_class * dim, 0.0, 1.0, &mut rng)
        .chunks(dim)
        .enumerate()
        .flat_map(|(i, r)| {
            let mut v = r.to_vec();
            v[i / per_class] += 3.0;
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(move |x| x / n)
        })
        .collect();
    let labels: Vec<usize> = (0..classes * per_class).map(|i| i / per_class).collect();
    let bank = ClassBank::from_rows(&backend, &rows, dim, &labels, classes, per_class).unwrap();
    let prototypes = bank.prototypes().unwrap();
    let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
    let out = sampler.synthesize(&input, &KnnEnergy { k: 5 }, &VmfKdeBarrier::default(), &mut rng).unwrap();
    let chains = classes * 2;
    assert_eq!(out.rounds.len(), 4);
    assert_eq!(out.tags.len(), chains * 4);
    for (round, stats) in out.rounds.iter().enumerate() {
        assert_eq!((stats.round, stats.active_chains), (round, chains));
        // Every proposal passes MH (log alpha = 0); the barrier decides each one.
        let kept = (stats.acceptance_rate * chains as f64).round() as usize;
        assert_eq!(kept + stats.barrier_rejections, chains, "round {round}");
        assert!(stats.barrier_checks >= chains && stats.mean_angular_step >= 0.0, "{stats:?}");
        assert_eq!(stats.energy_evaluations, chains + if round == 0 { chains } else { 0 });
        assert!(stats.mean_oodness.is_finite() && stats.mean_oodness > 0.0, "{stats:?}");
    }
}
