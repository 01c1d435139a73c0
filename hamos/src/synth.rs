//! `hamos synth`: standalone outlier synthesis from class-labelled embeddings.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hamos_api::{Backend, ClassBank, Error, Result, RoundDiagnostics, Synthesis, SynthesisInput};
use serde::Serialize;

use crate::config::RunConfig;
use crate::embeddings::{self, LabelledEmbeddings};

/// What `hamos synth` writes as JSON next to the outliers.
#[derive(Debug, Serialize)]
pub struct SynthReport {
    /// The embeddings file.
    pub input: PathBuf,
    /// Files written.
    pub outputs: Vec<PathBuf>,
    /// Backend and device.
    pub backend: String,
    /// Sampler name (`kind`) and config.
    pub sampler: serde_json::Value,
    /// Seed.
    pub seed: u64,
    /// Outliers written.
    pub outliers: usize,
    /// Per-round diagnostics.
    pub rounds: Vec<RoundDiagnostics>,
    /// Chains stopped for non-finite values: `(chain, round)`.
    pub stopped_chains: Vec<(usize, usize)>,
    /// Corrections applied to the input and notes from the sampler.
    pub notes: Vec<String>,
    /// Seconds spent reading and validating the input, opening the backend, synthesizing
    /// (buffer, prototypes and sampler) and writing the outliers.
    pub seconds: PhaseSeconds,
}

/// Wall-clock seconds per phase of `hamos synth`.
#[derive(Debug, Default, Serialize)]
pub struct PhaseSeconds {
    /// Reading and validating the embeddings.
    pub read: f64,
    /// Opening the backend.
    pub backend: f64,
    /// Building the buffer and prototypes, and synthesizing.
    pub synthesis: f64,
    /// Writing the outliers.
    pub write: f64,
}

/// Builds the class buffer (the last `train.buffer_size` rows of each class) and synthesizes.
pub fn synthesize(
    config: &RunConfig,
    backend: &Arc<dyn Backend>,
    data: &LabelledEmbeddings,
) -> Result<Synthesis> {
    let capacity = config.train.buffer_size;
    let bank = ClassBank::from_rows(backend, &data.rows, data.dim, &data.labels, data.num_classes, capacity)?;
    let prototypes = bank.prototypes()?;
    let input = SynthesisInput { bank: &bank, prototypes: &prototypes };
    let mut rng = hamos_api::rng_from_seed(config.seed);
    config.sampler.synthesize(&input, config.energy.as_ref(), config.barrier.as_ref(), &mut rng)
}

/// Reads `embeddings`, synthesizes with `config`, writes the outliers to `out` (same format as
/// the input) and the report to `diagnostics` (default: `out` with extension `.json`).
pub fn run(
    config: &RunConfig,
    embeddings: &Path,
    labels: Option<&Path>,
    num_classes: Option<usize>,
    out: &Path,
    diagnostics: Option<&Path>,
) -> Result<SynthReport> {
    let (in_format, out_format) = (embeddings::Format::of(embeddings)?, embeddings::Format::of(out)?);
    if in_format != out_format {
        let ext = embeddings.extension().and_then(|e| e.to_str()).unwrap_or_default();
        return Err(Error::invalid(
            "--out",
            format!(
                "{}: the outliers are written in the input's format, and the input {} is .{ext}; \
                 give an --out ending in .{ext} (e.g. {})",
                out.display(),
                embeddings.display(),
                out.with_extension(ext).display()
            ),
        ));
    }
    check_out_folder("--out", out)?;
    if let Some(path) = diagnostics {
        check_out_folder("--diagnostics", path)?;
    }
    let mut clock = std::time::Instant::now();
    let mut lap = || {
        let now = std::time::Instant::now();
        let seconds = (now - clock).as_secs_f64();
        clock = now;
        seconds
    };
    let mut seconds = PhaseSeconds::default();
    let data = embeddings::read(embeddings, labels, num_classes)?;
    seconds.read = lap();
    let backend = crate::open_backend(config)?;
    seconds.backend = lap();
    let synthesis = synthesize(config, &backend, &data)?;
    let rows = synthesis.outliers.to_vec_f32()?;
    seconds.synthesis = lap();
    let outputs = embeddings::write_outliers(out, &rows, data.dim, &synthesis.tags)?;
    seconds.write = lap();
    let mut notes = data.corrections;
    notes.extend(synthesis.notes);
    let report = SynthReport {
        input: embeddings.to_path_buf(),
        outputs,
        backend: format!("{} {}", backend.name(), backend.device()),
        sampler: serde_json::to_value(&config.sampler)
            .map_err(|e| Error::Config(format!("sampler config as JSON: {e}")))?,
        seed: config.seed,
        outliers: synthesis.tags.len(),
        rounds: synthesis.rounds,
        stopped_chains: synthesis.stopped_chains,
        notes,
        seconds,
    };
    let json_path = diagnostics.map(Path::to_path_buf).unwrap_or_else(|| out.with_extension("json"));
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Data(format!("diagnostics: {e}")))?;
    std::fs::write(&json_path, json).map_err(|source| Error::Io {
        op: "writing diagnostics",
        path: json_path,
        source,
    })?;
    Ok(report)
}

/// Errors unless the folder `path` goes into exists (output folders are never created silently:
/// a mistyped path would scatter results).
pub fn check_out_folder(flag: &str, path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if !dir.is_dir() => Err(Error::invalid(
            flag,
            format!("{}: the folder {} does not exist; create it first", path.display(), dir.display()),
        )),
        _ => Ok(()),
    }
}
