//! `hamos bench synth`: one mini-batch of synthesis at CIFAR-10 and CIFAR-100 scale for every
//! sampler, like the time column of Table 9, on clustered synthetic embeddings or on the user's
//! own (`--embeddings FILE`).

use std::time::Instant;

use hamos_api::registry::{find_plugin, PluginKind};
use hamos_api::{ClassBank, Result, RoundDiagnostics, Sampler, SynthesisInput};

use crate::config::RunConfig;
use crate::embeddings::LabelledEmbeddings;

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
    /// multiply-add), counted from the run's diagnostics by [`counted_multiply_adds`]. Zero for
    /// the baselines.
    pub gflop: f64,
    /// Barrier checks of the last mini-batch, and how many needed the exact density.
    pub barrier_checks: (usize, usize),
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
    for (flag, value) in [("--per-class", per_class), ("--dim", dim), ("--runs", runs)] {
        if value == 0 {
            return Err(hamos_api::Error::Config(format!("bench synth: {flag} must be at least 1")));
        }
    }
    let backend = crate::open_backend(config)?;
    let mut out = Vec::new();
    for &classes in class_counts {
        let (rows, labels) = clustered(classes, per_class, dim, config.seed);
        let buffer = Buffer { rows: &rows, labels: &labels, classes, dim, capacity: per_class };
        out.extend(time_samplers(config, &backend, samplers, &buffer, runs, &mut progress)?);
    }
    Ok(out)
}

/// Times `runs` mini-batches (after one warm-up) of each sampler on the user's embeddings, read
/// as `hamos synth` reads them: the buffer holds the last `train.buffer_size` rows of each class.
pub fn run_on(
    config: &RunConfig,
    samplers: &[String],
    data: &LabelledEmbeddings,
    runs: usize,
    mut progress: impl FnMut(&str, usize),
) -> Result<Vec<SynthTiming>> {
    if runs == 0 {
        return Err(hamos_api::Error::Config("bench synth: --runs must be at least 1".into()));
    }
    let backend = crate::open_backend(config)?;
    let buffer = Buffer {
        rows: &data.rows,
        labels: &data.labels,
        classes: data.num_classes,
        dim: data.dim,
        capacity: config.train.buffer_size,
    };
    time_samplers(config, &backend, samplers, &buffer, runs, &mut progress)
}

/// Labelled rows and the buffer they fill.
struct Buffer<'a> {
    rows: &'a [f32],
    labels: &'a [usize],
    classes: usize,
    dim: usize,
    capacity: usize,
}

fn time_samplers(
    config: &RunConfig,
    backend: &std::sync::Arc<dyn hamos_api::Backend>,
    samplers: &[String],
    buffer: &Buffer<'_>,
    runs: usize,
    progress: &mut impl FnMut(&str, usize),
) -> Result<Vec<SynthTiming>> {
    let Buffer { rows, labels, classes, dim, capacity } = *buffer;
    // The FLOP count uses the rows the buffer really holds.
    let mut counts = vec![0usize; classes];
    labels.iter().for_each(|&l| counts[l.min(classes.saturating_sub(1))] += 1);
    let filled = capacity.min(counts.iter().copied().max().unwrap_or(0));
    let mut out = Vec::new();
    for name in samplers {
        find_plugin(PluginKind::Sampler, name)?;
        let sampler: Box<dyn Sampler> = toml::from_str(&format!("kind = \"{name}\""))
            .map_err(|e| hamos_api::Error::Config(e.to_string()))?;
        progress(name, classes);
        let mut rng = hamos_api::rng_from_seed(config.seed);
        let mut times = Vec::with_capacity(runs);
        let (mut gflop, mut barrier_checks) = (0.0, (0, 0));
        for run in 0..=runs {
            // A fresh bank per mini-batch, as in training (the buffer changes every step),
            // so whatever a plugin or backend derives from it is rebuilt inside the timing.
            let bank = ClassBank::from_rows(backend, rows, dim, labels, classes, capacity)?;
            let prototypes = bank.prototypes()?;
            let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
            let start = Instant::now();
            let synthesis =
                sampler.synthesize(&input, config.energy.as_ref(), config.barrier.as_ref(), &mut rng)?;
            let elapsed = start.elapsed().as_secs_f64() * 1e3;
            let multiply_adds = counted_multiply_adds(&synthesis.rounds, classes, filled, dim);
            gflop = 2.0 * multiply_adds as f64 / 1e9;
            barrier_checks = (
                synthesis.rounds.iter().map(|r| r.barrier_exact).sum(),
                synthesis.rounds.iter().map(|r| r.barrier_checks).sum(),
            );
            if run > 0 {
                times.push(elapsed);
            }
        }
        out.push(SynthTiming {
            sampler: name.clone(),
            classes,
            median_ms: super::median(times),
            gflop,
            barrier_checks,
        });
    }
    Ok(out)
}

/// Multiply-adds of one mini-batch from its diagnostics: `C S d` per exact barrier check,
/// `C d (d + 3) / 2` per check the moment bounds decided (the mean dots and the upper-triangle
/// quadratic forms) plus `C S d^2` once for the moments, `2 S d` per energy evaluation. An
/// estimate, not a bound: the diagnostics do not say which tier decided a check, and proposals
/// decided by the first tier cost only the `C d` mean dots (counted high), the fused Gram
/// product computes about half of `C S d^2` (counted high), while bounds computed for checks
/// that then needed the exact density are not counted (counted low).
pub fn counted_multiply_adds(
    rounds: &[RoundDiagnostics],
    classes: usize,
    per_class: usize,
    dim: usize,
) -> usize {
    let sum = |f: fn(&RoundDiagnostics) -> usize| rounds.iter().map(f).sum::<usize>();
    let (checks, exact, energy) =
        (sum(|r| r.barrier_checks), sum(|r| r.barrier_exact), sum(|r| r.energy_evaluations));
    let screened = checks.saturating_sub(exact);
    let moments = if screened > 0 { classes * per_class * dim * dim } else { 0 };
    exact * classes * per_class * dim
        + screened * classes * dim * (dim + 3) / 2
        + moments
        + energy * 2 * per_class * dim
}

/// Markdown table: one row per sampler, one column per class count.
pub fn table(timings: &[SynthTiming], class_counts: &[usize]) -> String {
    let mut out = String::from("| sampler |");
    for c in class_counts {
        out.push_str(&format!(" C = {c}: ms | GFLOP | GFLOP/s | exact / barrier checks |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|---|---|---|".repeat(class_counts.len()));
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
                    " {:.1} | {:.2} | {:.1} | {} / {} |",
                    t.median_ms,
                    t.gflop,
                    t.gflop / (t.median_ms / 1e3),
                    t.barrier_checks.0,
                    t.barrier_checks.1
                )),
                Some(t) => out.push_str(&format!(" {:.1} | - | - | - |", t.median_ms)),
                None => out.push_str(" - | - | - | - |"),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_adds_are_counted_from_the_diagnostics() {
        let round = |checks, exact, energy| RoundDiagnostics {
            barrier_checks: checks,
            barrier_exact: exact,
            energy_evaluations: energy,
            ..RoundDiagnostics::default()
        };
        let (c, s, d) = (3, 10, 4);
        // Exact only: 5 checks of C S d, 7 energy evaluations of 2 S d.
        assert_eq!(counted_multiply_adds(&[round(5, 5, 7)], c, s, d), 5 * 120 + 7 * 80);
        // Two screened checks cost C d (d + 3) / 2 = 42 each, plus C S d^2 once for the moments.
        let screened = counted_multiply_adds(&[round(4, 3, 0), round(1, 0, 0)], c, s, d);
        assert_eq!(screened, 3 * 120 + 2 * 42 + 480);
    }

    #[test]
    fn zero_sizes_are_errors_that_name_the_flag() {
        let config = crate::load_config(None, Vec::new()).expect("the default config loads");
        for (per_class, dim, runs, flag) in
            [(0, 4, 1, "--per-class"), (5, 0, 1, "--dim"), (5, 4, 0, "--runs")]
        {
            let error = run(&config, &["hmc".to_string()], &[3], per_class, dim, runs, |_, _| ())
                .err()
                .map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|e| e.contains(flag)), "{flag}: {error:?}");
        }
    }
}
