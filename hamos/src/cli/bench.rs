//! `hamos bench`: the benchmarks' command line.

use std::path::PathBuf;

use clap::Subcommand;

use super::ConfigArgs;

#[derive(Subcommand)]
pub(super) enum BenchCommand {
    /// Per-op overhead of the tensor abstraction against calling each backend directly.
    Ops {
        /// Timed samples (the median is reported).
        #[arg(long, default_value_t = 15)]
        samples: usize,
        /// Calls per sample.
        #[arg(long, default_value_t = 20000)]
        iters: usize,
    },
    /// One HamOS fine-tuning step as the trainer runs it, split into data, network and synthesis.
    Step {
        #[command(flatten)]
        config: ConfigArgs,
        /// Backends to time (comma-separated; default: every compiled backend).
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Timed steps (medians reported), after two warm-up steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
    },
    /// One training step (forward, cross-entropy, backward, SGD) per backbone and backend.
    Train {
        /// Backbones to time (comma-separated plugin names, default configs).
        #[arg(long, value_delimiter = ',', default_value = "mlp,small_cnn")]
        backbones: Vec<String>,
        /// Backends to time (comma-separated; default: every compiled backend).
        #[arg(long, value_delimiter = ',')]
        backends: Vec<String>,
        /// Images per step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Timed steps (the median is reported), after two warm-up steps.
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// CPU threads for each backend (0: the machine's cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// One mini-batch of synthesis per sampler at CIFAR-10 and CIFAR-100 scale (Table 9 time).
    Synth {
        #[command(flatten)]
        config: ConfigArgs,
        /// Samplers to time (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "random_walk,hmc,mala,mmala,rmhmc,vos,npos")]
        samplers: Vec<String>,
        /// Class counts (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "10,100")]
        classes: Vec<usize>,
        /// Buffered embeddings per class `S`.
        #[arg(long, default_value_t = 1000)]
        per_class: usize,
        /// Embedding dimension `d`.
        #[arg(long, default_value_t = 128)]
        dim: usize,
        /// Timed mini-batches per cell (median reported, after one warm-up).
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Time on these class-labelled embeddings instead (.npz, .safetensors, or .npy +
        /// --labels, as `hamos synth`); the buffer is the last `train.buffer_size` rows per class.
        #[arg(long, conflicts_with_all = ["classes", "per_class", "dim"])]
        embeddings: Option<PathBuf>,
        /// Labels file (.npy), when --embeddings is a .npy file.
        #[arg(long, requires = "embeddings")]
        labels: Option<PathBuf>,
        /// Number of classes of --embeddings (default: largest label + 1).
        #[arg(long, requires = "embeddings")]
        num_classes: Option<usize>,
    },
}

/// `requested` (every compiled backend when empty); an error names one that is not compiled in.
fn compiled_backends(requested: &[String]) -> crate::Result<Vec<String>> {
    let compiled = hamos_api::backend::backend_names();
    if requested.is_empty() {
        return Ok(compiled.iter().map(|b| b.to_string()).collect());
    }
    for name in requested {
        if !compiled.contains(&name.as_str()) {
            return Err(crate::Error::invalid(
                "--backends",
                format!(
                    "`{name}` is not compiled in (compiled: {}); `tch` needs `--features tch`",
                    compiled.join(", ")
                ),
            ));
        }
    }
    Ok(requested.to_vec())
}

/// Runs `hamos bench train` over `backends` (every compiled one when empty).
fn bench_train(
    backbones: &[String],
    backends: &[String],
    batch: usize,
    steps: usize,
    threads: usize,
) -> crate::Result<String> {
    let mut timings = Vec::new();
    let options = hamos_api::BackendOptions {
        threads: if threads > 0 {
            threads
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        },
    };
    for name in &compiled_backends(backends)? {
        let backend = hamos_api::open_backend_with(name, "cpu", &options)?;
        for backbone_name in backbones {
            hamos_api::registry::find_plugin(hamos_api::PluginKind::Model, backbone_name)?;
            let backbone: Box<dyn hamos_api::Backbone> = toml::Value::Table(
                [("kind".to_string(), toml::Value::String(backbone_name.clone()))].into_iter().collect(),
            )
            .try_into()
            .map_err(|e| crate::Error::Config(format!("model `{backbone_name}`: {e}")))?;
            eprintln!("timing {backbone_name} on {name} at batch {batch}...");
            timings.push(crate::bench::train::time_backbone(
                &backend,
                backbone_name,
                backbone.into(),
                batch,
                2,
                steps,
            )?);
            #[cfg(feature = "tch")]
            if name == "tch" && backbone_name == "small_cnn" {
                timings.push(crate::bench::train::time_small_cnn_direct(batch, 2, steps)?);
            }
        }
    }
    Ok(crate::bench::train::table(&timings))
}

/// Runs one benchmark command and prints its table.
pub(super) fn run(what: BenchCommand) -> crate::Result<()> {
    match what {
        BenchCommand::Synth {
            config,
            samplers,
            classes,
            per_class,
            dim,
            runs,
            embeddings,
            labels,
            num_classes,
        } => {
            let config = config.load()?;
            let data = match &embeddings {
                Some(path) => Some(crate::embeddings::read(path, labels.as_deref(), num_classes)?),
                None => None,
            };
            let cells = samplers.len() * data.as_ref().map_or(classes.len(), |_| 1);
            let bar = indicatif::ProgressBar::new(cells as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let progress = |name: &str, c: usize| {
                bar.set_message(format!("{name} at C = {c}"));
                bar.inc(1);
            };
            let (timings, classes) = match (&data, &embeddings) {
                (Some(data), Some(path)) => {
                    let timings = crate::bench::synth::run_on(&config, &samplers, data, runs, progress)?;
                    println!(
                        "embeddings {}: {} rows, C = {}, d = {}, buffer S = {} per class",
                        path.display(),
                        data.labels.len(),
                        data.num_classes,
                        data.dim,
                        config.train.buffer_size
                    );
                    (timings, vec![data.num_classes])
                }
                _ => {
                    let timings = crate::bench::synth::run(
                        &config, &samplers, &classes, per_class, dim, runs, progress,
                    )?;
                    println!("clustered synthetic embeddings, S = {per_class}, d = {dim}");
                    (timings, classes)
                }
            };
            bar.finish_and_clear();
            println!(
                "backend {} {}, median of {runs} mini-batches after one warm-up",
                config.backend, config.device
            );
            print!("{}", crate::bench::synth::table(&timings, &classes));
        }
        BenchCommand::Train { backbones, backends, batch, steps, threads } => {
            print!("{}", bench_train(&backbones, &backends, batch, steps, threads)?);
        }
        BenchCommand::Step { config, backends, steps } => {
            let mut timings = Vec::new();
            let mut model = String::new();
            for backend in &compiled_backends(&backends)? {
                let mut overrides = config.overrides.clone();
                overrides.push(format!("backend={backend:?}"));
                let run_config = crate::load_config_from(config.base()?, config.config.clone(), overrides)?;
                model = run_config.model.typetag_name().to_string();
                eprintln!("timing the HamOS step of {model} on {backend}...");
                timings.push(crate::bench::step::time_hamos_step(&run_config, 2, steps)?);
            }
            print!("{}", crate::bench::step::table(&model, &timings));
        }
        BenchCommand::Ops { samples, iters } => {
            print!("{}", crate::bench::overhead_table(samples, iters)?);
        }
    }
    Ok(())
}
