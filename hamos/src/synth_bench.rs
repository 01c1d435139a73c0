//! `hamos bench synth`: one mini-batch of synthesis at CIFAR-10 and CIFAR-100 scale for every
//! sampler, like the time column of Table 9.

use std::time::Instant;

use hamos_api::registry::{find_plugin, PluginKind};
use hamos_api::{ClassBank, Result, RunConfig, Sampler, SynthesisInput};

/// One measured cell.
#[derive(Debug, Clone)]
pub struct SynthTiming {
    /// Sampler name.
    pub sampler: String,
    /// Classes `C`.
    pub classes: usize,
    /// Median milliseconds per mini-batch.
    pub median_ms: f64,
    /// GFLOP per mini-batch in the barrier's and the energy's products (2 FLOP per
    /// multiply-add), counted from the run's diagnostics: each barrier check is `C S d`
    /// multiply-adds, each energy evaluation `2 S d`. Zero for the baselines.
    pub gflop: f64,
}

/// Clustered unit embeddings: `classes` classes of `per_class` rows in `dim` dimensions.
pub fn clustered(classes: usize, per_class: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<usize>) {
    let mut rng = hamos_api::rng_from_seed(seed);
    let centres = hamos_api::backend::randn_host(classes * dim, 0.0, 1.0, &mut rng);
    let noise = hamos_api::backend::randn_host(classes * per_class * dim, 0.0, 0.3, &mut rng);
    let mut rows = Vec::with_capacity(noise.len());
    let mut labels = Vec::with_capacity(classes * per_class);
    for (i, chunk) in noise.chunks(dim).enumerate() {
        let class = i / per_class;
        let centre = &centres[class * dim..(class + 1) * dim];
        let cn = centre.iter().map(|x| x * x).sum::<f32>().sqrt();
        let v: Vec<f32> = centre.iter().zip(chunk).map(|(c, n)| c / cn + n / (dim as f32).sqrt()).collect();
        let vn = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        rows.extend(v.iter().map(|x| x / vn));
        labels.push(class);
    }
    (rows, labels)
}

/// Times `runs` mini-batches (after one warm-up) of each sampler at each class count.
pub fn run(
    config: &RunConfig,
    samplers: &[String],
    class_counts: &[usize],
    per_class: usize,
    dim: usize,
    runs: usize,
    mut progress: impl FnMut(&str, usize),
) -> Result<Vec<SynthTiming>> {
    let backend = crate::open_backend(config)?;
    let mut out = Vec::new();
    for &classes in class_counts {
        let (rows, labels) = clustered(classes, per_class, dim, config.seed);
        let bank = ClassBank::from_rows(&backend, &rows, dim, &labels, classes, per_class)?;
        let prototypes = bank.prototypes()?;
        let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
        for name in samplers {
            find_plugin(PluginKind::Sampler, name)?;
            let sampler: Box<dyn Sampler> = toml::from_str(&format!("kind = \"{name}\""))
                .map_err(|e| hamos_api::Error::Config(e.to_string()))?;
            progress(name, classes);
            let mut rng = hamos_api::rng_from_seed(config.seed);
            let mut times = Vec::with_capacity(runs);
            let mut gflop = 0.0;
            for run in 0..=runs {
                let start = Instant::now();
                let synthesis =
                    sampler.synthesize(&input, config.energy.as_ref(), config.barrier.as_ref(), &mut rng)?;
                let elapsed = start.elapsed().as_secs_f64() * 1e3;
                let multiply_adds: usize = synthesis
                    .rounds
                    .iter()
                    .map(|r| (r.barrier_checks * classes + r.energy_evaluations * 2) * per_class * dim)
                    .sum();
                gflop = 2.0 * multiply_adds as f64 / 1e9;
                if run > 0 {
                    times.push(elapsed);
                }
            }
            times.sort_by(f64::total_cmp);
            out.push(SynthTiming {
                sampler: name.clone(),
                classes,
                median_ms: times[times.len() / 2],
                gflop,
            });
        }
    }
    Ok(out)
}

/// Markdown table: one row per sampler, one column per class count.
pub fn table(timings: &[SynthTiming], class_counts: &[usize]) -> String {
    let mut out = String::from("| sampler |");
    for c in class_counts {
        out.push_str(&format!(" C = {c}: ms | GFLOP | GFLOP/s |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|---|---|".repeat(class_counts.len()));
    out.push('\n');
    let mut names: Vec<&str> = Vec::new();
    for t in timings {
        if !names.contains(&t.sampler.as_str()) {
            names.push(&t.sampler);
        }
    }
    for name in names {
        out.push_str(&format!("| {name} |"));
        for &c in class_counts {
            match timings.iter().find(|t| t.sampler == name && t.classes == c) {
                Some(t) if t.gflop > 0.0 => out.push_str(&format!(
                    " {:.1} | {:.2} | {:.1} |",
                    t.median_ms,
                    t.gflop,
                    t.gflop / (t.median_ms / 1e3)
                )),
                Some(t) => out.push_str(&format!(" {:.1} | - | - |", t.median_ms)),
                None => out.push_str(" - | - | - |"),
            }
        }
        out.push('\n');
    }
    out
}
