//! `hamos ablate`: its arguments and output.

use std::path::PathBuf;

use crate::ablate::{self, Grid, GridArgs, GridFile, ModelChoice, Seeds};

/// Arguments of `hamos ablate`.
#[derive(clap::Args)]
pub(super) struct AblateArgs {
    /// Grid file (TOML: base, config, set, seeds, models, scorer, [[vary]] key/values); the
    /// flags below add to it or replace its values.
    #[arg(long)]
    grid: Option<PathBuf>,
    /// Vary one field over comma-separated values, e.g. `--vary sampler.kind=hmc,mala`
    /// (repeatable: several make a grid, the first varying slowest).
    #[arg(long, value_name = "KEY=V1,V2,...")]
    vary: Vec<String>,
    /// TOML run config layered over the base, for every cell.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override one field in every cell (repeatable), before the varied fields.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// `preset` (the shipped preset, the default) or `table4`.
    #[arg(long, value_parser = ["preset", "table4"])]
    base: Option<String>,
    /// Number of seeds: 0, 1, ..., N-1 (default 3, or the grid file's).
    #[arg(long, conflicts_with = "seed_list")]
    seeds: Option<u64>,
    /// Explicit seeds, comma-separated.
    #[arg(long, value_delimiter = ',')]
    seed_list: Vec<u64>,
    /// Models each cell fine-tunes: `hamos`, `no_outliers` (comma-separated; default hamos).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Scorer of the table's rows (default knn; also knn_features or the configured scorer).
    #[arg(long)]
    scorer: Option<String>,
    /// The ablation folder (default runs/<UTC time>-ablate). Rerunning into it skips the
    /// complete cells.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Clear `--out` first (an ablation folder) and run every cell again.
    #[arg(long, requires = "out")]
    force: bool,
}

/// Runs `hamos ablate`: every cell, then the table; an error when any cell failed (after the
/// others ran and the table was written).
pub(super) fn run(args: AblateArgs) -> crate::Result<()> {
    let file = args.grid.as_deref().map(GridFile::read).transpose()?;
    let models = if args.models.is_empty() {
        None
    } else {
        Some(args.models.iter().map(|m| m.parse()).collect::<crate::Result<Vec<ModelChoice>>>()?)
    };
    let seeds = match (args.seeds, args.seed_list.is_empty()) {
        (Some(n), _) => Some(Seeds::Count(n)),
        (None, false) => Some(Seeds::List(args.seed_list)),
        (None, true) => None,
    };
    let grid = Grid::resolve(
        file,
        GridArgs {
            base: args.base,
            config: args.config,
            set: args.overrides,
            vary: args.vary,
            seeds,
            models,
            scorer: args.scorer,
        },
    )?;
    let root = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-ablate", crate::run_dir::now_stamp())));
    let cells = grid.cells().len();
    eprintln!(
        "ablation: {} settings x {} seeds = {cells} cells into {}",
        grid.settings().len(),
        grid.seeds.len(),
        root.display()
    );
    let progress = super::Progress::new(true);
    let cache = crate::train::pretrain::cache_dir();
    let outcome = ablate::run(&grid, &root, args.force, &progress, Some(&cache))?;
    println!("{}", outcome.table);
    println!("ablation folder: {} (table.md, table.csv, cells.csv, fpr95.png)", outcome.dir.display());
    let failures = outcome.failures();
    if !failures.is_empty() {
        return Err(crate::Error::Data(format!(
            "{} of {cells} cells failed (listed under the table); rerun the same command to retry them",
            failures.len()
        )));
    }
    Ok(())
}
