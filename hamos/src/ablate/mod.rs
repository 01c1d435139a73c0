//! `hamos ablate`: a grid of runs that differ in a few config fields (a sampler, a loss, a
//! hyperparameter), each setting at several seeds, and one paper-style table of them.
//!
//! Every cell (a setting at a seed) is a run directory under `<out>/cells/`, written by the same
//! job as `hamos run` (without the plots and, unless asked, without the post-hoc scorers of the
//! pretrained classifier). Cells that share a seed share one cached pretrained classifier (the
//! pretraining cache is keyed by what pretraining reads). A restarted ablation skips the complete
//! cells (those with `report.md`, the job's last file, and the same `config.toml`) and runs the
//! rest; a failed cell is reported and the others go on. The table (`table.md`, `table.csv`),
//! every cell's values (`cells.csv`) and the FPR95 plot (`fpr95.png`) are rebuilt from the
//! complete cells at the end of every invocation.
//!
//! ```no_run
//! use hamos::ablate::{self, Grid, GridArgs};
//! let args = GridArgs { vary: vec!["sampler.kind=random_walk,hmc".into()], ..GridArgs::default() };
//! let grid = Grid::resolve(None, args)?;
//! let (root, cache) = (std::path::Path::new("runs/samplers"), std::path::Path::new("runs/cache"));
//! let outcome = ablate::run(&grid, root, false, &hamos::pipeline::Silent, Some(cache))?;
//! println!("{}", outcome.table);
//! # Ok::<(), hamos_api::Error>(())
//! ```

mod grid;
mod plot;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Instant;

use hamos_api::{Error, Result};

pub use grid::{Axis, Cell, Grid, GridArgs, GridFile, ModelChoice, Seeds, Setting};
pub use summary::{read_cell, CellResult, SamplerStats};

use crate::config::{one_line, RunConfig};
use crate::eval::job::{self, JobPlan};
use crate::pipeline::{Observer, Pipeline};
use crate::RunDir;

/// The grid as the ablation folder records it.
pub const GRID_FILE: &str = "ablation.toml";
/// A failed cell's error, in its run directory.
const ERROR_FILE: &str = "error.txt";

/// What happened to one cell in this invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum CellStatus {
    /// Complete before this invocation, with the same config: not run again.
    Skipped,
    /// Run now, in this many seconds.
    Ran(f64),
    /// Not complete: the error, on one line.
    Failed(String),
}

/// A cell and what happened to it.
#[derive(Debug, Clone)]
pub struct CellOutcome {
    /// The cell.
    pub cell: Cell,
    /// Its run directory.
    pub dir: PathBuf,
    /// Skipped, ran or failed.
    pub status: CellStatus,
}

/// What `hamos ablate` produced.
#[derive(Debug, Clone)]
pub struct AblationOutcome {
    /// The ablation folder.
    pub dir: PathBuf,
    /// Every cell, in grid order.
    pub cells: Vec<CellOutcome>,
    /// The Markdown table (also `table.md`).
    pub table: String,
}

impl AblationOutcome {
    /// The cells that failed.
    pub fn failures(&self) -> Vec<&CellOutcome> {
        self.cells.iter().filter(|c| matches!(c.status, CellStatus::Failed(_))).collect()
    }
}

/// The job plan of a cell: the grid's models, no plots; the pretrained classifier's post-hoc
/// scorers only when the table reads one of them.
fn plan(grid: &Grid) -> JobPlan {
    JobPlan {
        with_outliers: grid.models.contains(&ModelChoice::Hamos),
        without_outliers: grid.models.contains(&ModelChoice::NoOutliers),
        post_hoc: false,
        plots: false,
    }
}

/// Prepares the ablation folder `root`: created when missing; an existing ablation folder is
/// continued (or cleared first with `force`); any other non-empty folder is refused.
fn prepare_root(root: &Path, grid: &Grid, force: bool) -> Result<()> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { op, path, source }
    };
    let is_ablation = root.join(GRID_FILE).is_file();
    if root.is_dir() && std::fs::read_dir(root).map_err(io("reading", root))?.next().is_some() {
        if !is_ablation {
            return Err(Error::Config(format!(
                "--out {} is not empty and holds no {GRID_FILE}: choose a new folder for the ablation",
                root.display()
            )));
        }
        if force {
            std::fs::remove_dir_all(root).map_err(io("clearing the ablation folder", root))?;
            eprintln!("--force: cleared {}", root.display());
        }
    }
    std::fs::create_dir_all(root).map_err(io("creating the ablation folder", root))?;
    std::fs::write(root.join(GRID_FILE), grid.to_toml()?).map_err(io("writing", &root.join(GRID_FILE)))
}

/// Whether `dir` holds a complete run of `config`: `Ok(true)` when complete with the same
/// config, `Ok(false)` when incomplete (or absent), an error naming the differences when it is
/// complete with another config.
fn complete(dir: &Path, config: &RunConfig) -> Result<bool> {
    let run = RunDir::at(dir);
    if !run.report_file().is_file() || !run.metrics_file().is_file() {
        return Ok(false);
    }
    let recorded = std::fs::read_to_string(run.config_file()).unwrap_or_default();
    if recorded == config.to_toml()? {
        return Ok(true);
    }
    let sources =
        crate::ConfigSources { base: None, file: Some(run.config_file()), env: false, overrides: Vec::new() };
    let differences = match sources.load() {
        Ok(run) => crate::run_dir::differences(&run, config)?.join(", "),
        Err(e) => format!("its config.toml does not load ({e})"),
    };
    Err(Error::Config(format!(
        "{} holds a complete run of another config ({differences}); delete that folder, or rerun \
         with --force to start the whole ablation afresh",
        dir.display()
    )))
}

/// Runs one cell into `dir` (cleared first), catching panics as errors.
fn run_cell(pipeline: &Pipeline, dir: &Path, plan: JobPlan) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| Error::Io {
            op: "clearing an incomplete cell",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let dir = RunDir::create(Some(dir.to_path_buf()), "cell")?;
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job::run_plan(pipeline, &dir, plan)));
    let result = match outcome {
        Ok(result) => result.map(|_| ()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::Data(format!("the cell panicked: {message}")))
        }
    };
    if let Err(error) = &result {
        let _ = std::fs::write(dir.path().join(ERROR_FILE), format!("{error}\n"));
    }
    result
}

/// Runs every cell of `grid` not yet complete in the ablation folder `root`, then writes the
/// table, the per-cell values and the plot from every complete cell. A failed cell does not
/// stop the others; its error is in the outcome, in `<cell>/error.txt` and under the table.
/// `observer` sees every cell's pipeline; pretrained classifiers are cached in `cache` (cells
/// that differ only after pretraining share one per seed).
pub fn run(
    grid: &Grid,
    root: &Path,
    force: bool,
    observer: &dyn Observer,
    cache: Option<&Path>,
) -> Result<AblationOutcome> {
    prepare_root(root, grid, force)?;
    let cells = grid.cells();
    let plan = plan(grid);
    // Every cell's config first: a bad value fails its cells at once, not after hours.
    let configs: Vec<Result<RunConfig>> = cells.iter().map(|cell| grid.config(cell)).collect();
    let total = cells.len();
    let width = total.to_string().len();
    let mut outcomes = Vec::with_capacity(total);
    for (index, (cell, config)) in cells.into_iter().zip(configs).enumerate() {
        let dir = cell.dir(root);
        let prefix = format!("[{:>width$}/{total}] {}", index + 1, cell.label());
        let status = match config.and_then(|config| Ok((complete(&dir, &config)?, config))) {
            Err(error) => CellStatus::Failed(one_line(&error)),
            Ok((true, _)) => CellStatus::Skipped,
            Ok((false, config)) => {
                eprintln!("{prefix}: running into {}", dir.display());
                let started = Instant::now();
                let pipeline =
                    Pipeline::new(&config).observed_by(observer).with_cache(cache.map(Path::to_path_buf));
                match run_cell(&pipeline, &dir, plan) {
                    Ok(()) => CellStatus::Ran(started.elapsed().as_secs_f64()),
                    Err(error) => CellStatus::Failed(one_line(&error)),
                }
            }
        };
        let line = match &status {
            CellStatus::Skipped => "complete already, skipped".to_string(),
            CellStatus::Ran(seconds) => {
                let result = read_cell(&dir, &grid.scorer);
                let brief = result.map(|r| r.brief()).unwrap_or_else(|e| format!("(unreadable: {e})"));
                format!("done in {seconds:.0} s: {brief}")
            }
            CellStatus::Failed(error) => format!("FAILED: {error}"),
        };
        eprintln!("{prefix}: {line}");
        outcomes.push(CellOutcome { cell, dir, status });
    }
    let table = summary::write_outputs(root, grid, &outcomes)?;
    Ok(AblationOutcome { dir: root.to_path_buf(), cells: outcomes, table })
}
