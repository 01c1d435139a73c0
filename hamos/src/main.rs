//! The `hamos` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// HamOS: OOD detection with outliers synthesized by Hamiltonian Monte Carlo on the hypersphere.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Config sources shared by the subcommands that read a run config.
#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML run config (defaults: the paper's Table 4).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override one field, e.g. `--set sampler.step_size=0.05` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the main job of a config.
    Run(ConfigArgs),
    /// Print every compiled backend and registered plugin with its defaults.
    Plugins,
    /// Print the resolved config (defaults, file, HAMOS_ environment, --set).
    Config(ConfigArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Per-op overhead of the tensor abstraction against calling each backend directly.
    Ops {
        /// Timed samples (the median is reported).
        #[arg(long, default_value_t = 15)]
        samples: usize,
        /// Calls per sample.
        #[arg(long, default_value_t = 20000)]
        iters: usize,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> hamos::Result<()> {
    match cli.command {
        Command::Plugins => print!("{}", hamos::plugins::listing()?),
        Command::Config(args) => {
            let config = hamos::load_config(args.config, args.overrides)?;
            print!("{}", config.to_toml()?);
        }
        Command::Run(args) => {
            let config = hamos::load_config(args.config, args.overrides)?;
            let backend = hamos::open_backend(&config)?;
            println!(
                "config is valid; backend {} on {} is ready. The training pipeline is not built yet: \
                 this build provides `hamos plugins`, `hamos config` and `hamos bench`.",
                backend.name(),
                backend.device()
            );
        }
        Command::Bench { what: BenchCommand::Ops { samples, iters } } => {
            print!("{}", hamos::bench::overhead_table(samples, iters)?);
        }
    }
    Ok(())
}
