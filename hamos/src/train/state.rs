//! Fine-tuning checkpoints: the network's parameters, the optimizer's momentum, the embedding
//! buffer and the position in the schedule, in one safetensors file written atomically at every
//! epoch. Batches and sampler draws derive from `(seed, epoch, step)`, so this is the whole
//! random state: resuming reproduces the uninterrupted run bit for bit on the CPU.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use hamos_api::{Error, ParamStore, Result, Tensor};
use hamos_nn::checkpoint::{self, HostData, HostTensors};
use hamos_nn::optim::Sgd;

use super::buffer::EmbeddingBuffer;

const MOMENTUM: &str = "optimizer.momentum.";
const BUFFER_ROWS: &str = "buffer.rows";
const BUFFER_META: &str = "buffer.meta";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Epochs completed.
    pub epoch: usize,
    /// Steps completed.
    pub step: usize,
    /// The run's seed.
    pub seed: u64,
}

/// Writes the training state to `path` (atomically).
pub fn save(
    path: &Path,
    params: &ParamStore,
    sgd: &Sgd,
    buffer: &EmbeddingBuffer,
    at: Position,
) -> Result<()> {
    let backend = params.backend().clone();
    let (rows, meta) = buffer.state();
    let extra = [
        (BUFFER_ROWS.to_string(), backend.from_f32(rows, &[rows.len()])?),
        (BUFFER_META.to_string(), backend.from_i64(&meta, &[meta.len()])?),
    ];
    let momentum: Vec<(String, Tensor)> =
        sgd.momentum_buffers().iter().map(|(name, t)| (format!("{MOMENTUM}{name}"), t.clone())).collect();
    let named = params
        .iter()
        .map(|(name, p)| (name, &p.tensor))
        .chain(momentum.iter().map(|(n, t)| (n.as_str(), t)))
        .chain(extra.iter().map(|(n, t)| (n.as_str(), t)));
    let metadata = HashMap::from([
        ("format".to_string(), "hamos-train-state".to_string()),
        ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("epoch".to_string(), at.epoch.to_string()),
        ("step".to_string(), at.step.to_string()),
        ("seed".to_string(), at.seed.to_string()),
    ]);
    checkpoint::write_atomic(path, &HostTensors::from_tensors(named)?.serialize(Some(metadata))?)
}

/// Restores the state saved at `path` into `params`, `sgd` and `buffer`; returns the position.
pub fn load(
    path: &Path,
    params: &mut ParamStore,
    sgd: &mut Sgd,
    buffer: &mut EmbeddingBuffer,
) -> Result<Position> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        op: "reading checkpoint",
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::Data(format!("{}: not a safetensors file ({e})", path.display())))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some("hamos-train-state") {
        return Err(Error::Data(format!("{} is not a HamOS training checkpoint", path.display())));
    }
    let version = meta.get("version").cloned().unwrap_or_default();
    if version != env!("CARGO_PKG_VERSION") {
        return Err(Error::Data(format!(
            "{} was written by hamos {version}, this is {}; resume with that version",
            path.display(),
            env!("CARGO_PKG_VERSION")
        )));
    }
    let number = |key: &str| -> Result<u64> {
        meta.get(key).and_then(|v| v.parse().ok()).ok_or_else(|| {
            Error::Data(format!("{}: metadata `{key}` missing or not a number", path.display()))
        })
    };
    let at =
        Position { epoch: number("epoch")? as usize, step: number("step")? as usize, seed: number("seed")? };

    let mut file = checkpoint::read(path)?;
    let backend = params.backend().clone();
    let take_f32 = |file: &mut BTreeMap<_, _>, name: &str| -> Result<Vec<f32>> {
        match file.remove(name) {
            Some((_, _, HostData::F32(v))) => Ok(v),
            _ => Err(Error::Data(format!("{}: `{name}` missing or not float", path.display()))),
        }
    };
    let rows = take_f32(&mut file, BUFFER_ROWS)?;
    let buffer_meta = match file.remove(BUFFER_META) {
        Some((_, _, HostData::I64(v))) => v,
        _ => return Err(Error::Data(format!("{}: `{BUFFER_META}` missing", path.display()))),
    };
    buffer.restore(rows, &buffer_meta)?;
    let mut momentum = BTreeMap::new();
    for name in file.keys().filter(|k| k.starts_with(MOMENTUM)).cloned().collect::<Vec<_>>() {
        if let Some((_, dims, HostData::F32(values))) = file.remove(&name) {
            momentum.insert(name[MOMENTUM.len()..].to_string(), backend.from_f32(&values, &dims)?);
        }
    }
    sgd.set_momentum_buffers(momentum);
    checkpoint::load_host(params, file, path)?;
    Ok(at)
}

/// Loads only the network's parameters and buffers from a training checkpoint at `path` (the
/// optimizer's momentum and the embedding buffer are skipped), for evaluation.
pub fn load_weights(path: &Path, params: &mut ParamStore) -> Result<()> {
    let mut file = checkpoint::read(path)?;
    file.retain(|name, _| !name.starts_with(MOMENTUM) && name != BUFFER_ROWS && name != BUFFER_META);
    checkpoint::load_host(params, file, path)
}
