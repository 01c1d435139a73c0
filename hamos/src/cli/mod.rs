//! The `hamos` command line as a library function, so that a plugin crate's own binary gets
//! every command with its plugins registered:
//!
//! ```no_run
//! // src/main.rs of a crate that defines plugins (its registrations are linked by `use`):
//! // use my_plugins as _;
//! fn main() -> std::process::ExitCode {
//!     hamos::cli::main()
//! }
//! ```
//!
//! `examples/custom-plugin` ships such a binary (`cargo run -p hamos-example-plugin -- run
//! --set sampler.kind=midpoint_jitter`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::pipeline::{DiagnosticsLog, Observer, Pipeline};
use crate::run_dir::{self, Existing, RunDir};
use crate::train::pretrain::cache_dir;

mod ablate;
mod bench;
pub mod progress;

pub use progress::Progress;

/// HamOS: OOD detection with outliers synthesized by Hamiltonian Monte Carlo on the hypersphere.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Config sources shared by the subcommands that read a run config, in increasing priority:
/// the base, `--config`, `HAMOS_` environment variables (`HAMOS_SAMPLER__STEP_SIZE=0.05`), `--set`.
#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML run config, layered over the base (fields it does not set keep the base's values).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override one field, e.g. `--set sampler.step_size=0.05` (repeatable). Changing a plugin's
    /// kind (`--set sampler.kind=mala`) starts its section from that plugin's defaults.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// What the config starts from: `preset` (the shipped preset, examples/configs/default.toml:
    /// 3 fine-tuning epochs on the shipped data) or `table4` (the paper's Table 4 code defaults,
    /// 20 epochs).
    #[arg(long, value_name = "BASE", default_value = "preset", value_parser = ["preset", "table4"])]
    base: String,
}

impl ConfigArgs {
    fn base(&self) -> crate::Result<crate::Base> {
        self.base.parse()
    }

    fn load(&self) -> crate::Result<crate::RunConfig> {
        crate::load_config_from(self.base()?, self.config.clone(), self.overrides.clone())
    }
}

#[derive(Subcommand)]
enum Command {
    /// The main job: pretrain (cached), fine-tune with and without outliers, evaluate, report.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Run directory (default: runs/<UTC time>-run); one that holds files is refused.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Clear `--out` first when it holds an earlier run.
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Train: cross-entropy pretraining (cached) and HamOS fine-tuning, with checkpoints.
    Train {
        #[command(flatten)]
        config: ConfigArgs,
        /// Run directory (default: runs/<UTC time>-train); one that holds files is refused unless
        /// --resume or --force.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue from the last checkpoint in `--out`, with the run's own config.toml (`--set`
        /// may restate its values, not change them).
        #[arg(long, requires = "out", conflicts_with = "force")]
        resume: bool,
        /// Clear `--out` first when it holds an earlier run.
        #[arg(long, requires = "out")]
        force: bool,
        /// Fine-tune without synthesized outliers (the ID-loss-only baseline).
        #[arg(long)]
        no_outliers: bool,
    },
    /// Evaluate the checkpoints of a finished run again, with any scorers.
    Eval {
        /// The run directory (of `hamos run` or `hamos train`).
        #[arg(long)]
        run: PathBuf,
        /// Scorers (comma-separated plugin names, or `knn_features` for KNN on the normalized
        /// penultimate features; default: those of `hamos run`).
        #[arg(long, value_delimiter = ',')]
        scorers: Vec<String>,
        /// Where the results go (default: <run>/eval-<UTC time>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write a data set's features, projected embeddings, logits and labels through a saved model.
    Embed {
        /// Model config (default: the config.toml of the checkpoint's run directory, else the
        /// shipped preset).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Override one field (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// A checkpoint of `hamos run`/`hamos train` (a classifier or a dual-head network).
        #[arg(long)]
        checkpoint: PathBuf,
        /// `train`, `validation`, `test`, an OOD set of the config, or an inline data set such as
        /// 'format = "idx", images = "x.gz", labels = "y.gz"' (any loader).
        #[arg(long)]
        data: String,
        /// Output `.npz` (`features`, `embeddings`, `logits`, `labels`).
        #[arg(long)]
        out: PathBuf,
    },
    /// The table of several runs (e.g. seeds): mean ± std per model, scorer and data set.
    Table {
        /// Run directories (or their metrics.json files).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Also every OOD set and average as its own row, not only the near, far and overall
        /// averages side by side.
        #[arg(long)]
        per_set: bool,
        /// Also write the table to this Markdown file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ablation: a grid of runs varying config fields over several seeds, and its table.
    Ablate(ablate::AblateArgs),
    /// Print every compiled backend and registered plugin with its defaults.
    Plugins,
    /// Print the resolved config: exactly what `run`, `train` or `synth` with the same arguments
    /// use and write to config.toml (the shipped preset, --config, HAMOS_ environment, --set).
    Config(ConfigArgs),
    /// Synthesize outliers from class-labelled embeddings (.npz, .safetensors, or .npy + --labels).
    Synth {
        #[command(flatten)]
        config: ConfigArgs,
        /// Embeddings file: `embeddings` [n, d] float and `labels` [n] integer.
        #[arg(long)]
        embeddings: PathBuf,
        /// Labels file, for a `.npy` embeddings file.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Number of classes (default: largest label + 1).
        #[arg(long)]
        num_classes: Option<usize>,
        /// Output file, same format as the input.
        #[arg(long)]
        out: PathBuf,
        /// Diagnostics JSON (default: `--out` with extension `.json`).
        #[arg(long)]
        diagnostics: Option<PathBuf>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

/// Parses the process's arguments and runs the command: logging to stderr (colour only on a
/// terminal), then the subcommand; an error is printed as one line and the exit code is 1.
pub fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    // Colour codes only for a terminal; a log file or a pipe gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
    // Reports name the pretraining cache by its absolute path (before any thread exists).
    let cache = cache_dir();
    if let Ok(absolute) = std::path::absolute(&cache) {
        std::env::set_var("HAMOS_CACHE_DIR", absolute);
    }
    // Before any thread exists; a `threads` setting in the config refines it when the backend opens.
    hamos_api::configure_backends(&hamos_api::BackendOptions::default());
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> crate::Result<()> {
    match cli.command {
        Command::Ablate(args) => ablate::run(args)?,
        Command::Plugins => print!("{}", crate::plugins::listing()?),
        Command::Train { config, out, resume, force, no_outliers } => {
            let (config, dir) = if resume {
                let dir = out.ok_or_else(|| crate::Error::Config("--resume needs --out".into()))?;
                let label = |c: &crate::RunConfig| crate::train_label(c, !no_outliers);
                let run_config =
                    run_dir::resume_config(&dir, config.config.as_deref(), config.overrides, label)?;
                (run_config, RunDir::prepare(Some(dir), "train", Existing::Resume)?)
            } else {
                let config = config.load()?;
                let existing = if force { Existing::Clear } else { Existing::Refuse };
                (config, RunDir::prepare(out, "train", existing)?)
            };
            let progress = Progress::new(true);
            let trained = train(&config, &dir, resume, !no_outliers, &progress)?;
            if let Some(checkpoint) = &trained.checkpoint {
                println!("checkpoint: {}", checkpoint.display());
            }
            println!("run directory: {}", dir.path().display());
        }
        Command::Eval { run, scorers, out } => {
            let progress = Progress::new(true);
            let outcome = crate::eval::rerun::eval_run(&run, &scorers, out, &progress)?;
            println!("{}", crate::eval::report::table(&outcome.records));
            println!("results: {}", outcome.dir.display());
        }
        Command::Embed { config, overrides, checkpoint, data, out } => {
            let config = crate::embed_cmd::config_for(&checkpoint, config, overrides)?;
            let outcome = crate::embed_cmd::embed(&config, &checkpoint, &data, &out)?;
            let arrays: Vec<String> =
                outcome.arrays.iter().map(|(name, dims)| format!("{name} {dims:?}")).collect();
            println!(
                "wrote {} rows through the {} network to {}: {}",
                outcome.rows,
                outcome.network,
                out.display(),
                arrays.join(", ")
            );
        }
        Command::Table { runs, per_set, out } => {
            let (records, warnings) = crate::eval::aggregate::read_runs(&runs)?;
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            let rows = crate::eval::aggregate::aggregate(&records)?;
            let mut table = crate::eval::aggregate::table(&rows, records.len(), per_set);
            for warning in &warnings {
                table.push_str(&format!("\nWarning: {warning}\n"));
            }
            print!("{table}");
            if let Some(path) = out {
                std::fs::write(&path, &table).map_err(|source| crate::Error::Io {
                    op: "writing the table",
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Command::Config(args) => {
            let config = args.load()?;
            print!("{}", config.to_toml()?);
        }
        Command::Run { config, out, force } => {
            let config = config.load()?;
            let existing = if force { Existing::Clear } else { Existing::Refuse };
            let dir = RunDir::prepare(out, "run", existing)?;
            let progress = Progress::new(true);
            let pipeline = Pipeline::new(&config).observed_by(&progress).with_cache(Some(cache_dir()));
            let outcome = crate::eval::job::run(&pipeline, &dir)?;
            println!("{}", crate::eval::report::table(&outcome.records));
            for note in outcome.notes.iter().filter(|n| n.contains(": ") && n.ends_with(" s")) {
                println!("{note}");
            }
            println!("run directory: {}", outcome.dir.display());
        }
        Command::Synth { config, embeddings, labels, num_classes, out, diagnostics } => {
            let config = config.load()?;
            let report = crate::synth::run(
                &config,
                &embeddings,
                labels.as_deref(),
                num_classes,
                &out,
                diagnostics.as_deref(),
            )?;
            for note in &report.notes {
                println!("note: {note}");
            }
            for round in &report.rounds {
                println!(
                    "round {}: {} chains, acceptance {:.3}, barrier rejections {}, mean |dH| {:.4}, \
                     mean angular step {:.4}, mean OOD-ness {:.4}, non-finite {}",
                    round.round,
                    round.active_chains,
                    round.acceptance_rate,
                    round.barrier_rejections,
                    round.mean_abs_delta_h,
                    round.mean_angular_step,
                    round.mean_oodness,
                    round.non_finite
                );
            }
            let written: Vec<String> = report.outputs.iter().map(|p| p.display().to_string()).collect();
            println!("wrote {} outliers to {}", report.outliers, written.join(", "));
        }
        Command::Bench { what } => bench::run(what)?,
    }
    Ok(())
}

/// `hamos train`: writes the resolved config into `dir`, pretrains (or loads the cached or given
/// classifier) and fine-tunes, logging every step's diagnostics to `dir/diagnostics.jsonl`.
fn train(
    config: &crate::RunConfig,
    dir: &RunDir,
    resume: bool,
    with_outliers: bool,
    observer: &dyn Observer,
) -> crate::Result<crate::train::Trained> {
    dir.write_provenance(config)?;
    let log = DiagnosticsLog::open(&dir.diagnostics_file(), observer)?;
    let pipeline = Pipeline::new(config).observed_by(&log).with_cache(Some(cache_dir()));
    let data = pipeline.prepare()?;
    let start = pipeline.pretrain(&data)?;
    hamos_nn::checkpoint::save(&start.params, &dir.checkpoint(RunDir::PRETRAINED))?;
    let options = crate::train::TrainOptions {
        resume,
        ..crate::train::TrainOptions::new(config, with_outliers).saved_in(dir)
    };
    pipeline.finetune_with(&data, &start, &options)
}
