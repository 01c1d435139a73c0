//! [`ParamStore`]s as safetensors files under PyTorch names, so that a PyTorch `state_dict`
//! saved with `safetensors.torch.save_file` loads unchanged, and written atomically.
//!
//! Loading checks every name, shape and dtype and reports all the differences at once:
//! missing tensors (except optional ones), unexpected tensors, shape and dtype mismatches.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;

use hamos_api::{DType, Error, ParamStore, Result, Tensor};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// Tensors that a checkpoint may lack: PyTorch's batch-norm counters (never read by the
/// forward pass) and the HamOS prototypes (recomputed from training data when absent).
pub const OPTIONAL_SUFFIXES: [&str; 2] = ["num_batches_tracked", "prototypes"];

/// Whether a missing `name` is acceptable on load.
pub fn is_optional(name: &str) -> bool {
    OPTIONAL_SUFFIXES.iter().any(|suffix| name == *suffix || name.ends_with(&format!(".{suffix}")))
}

/// Host bytes of tensors, named, ready for safetensors.
pub struct HostTensors(Vec<(String, Dtype, Vec<usize>, Vec<u8>)>);

impl HostTensors {
    /// Copies named tensors to the host (`F32` as F32, `I64` as I64).
    pub fn from_tensors<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<Self> {
        let mut out = Vec::new();
        for (name, tensor) in tensors {
            let (dtype, bytes) = match tensor.dtype() {
                DType::F32 => {
                    (Dtype::F32, tensor.to_vec_f32()?.iter().flat_map(|v| v.to_le_bytes()).collect())
                }
                DType::I64 => {
                    (Dtype::I64, tensor.to_vec_i64()?.iter().flat_map(|v| v.to_le_bytes()).collect())
                }
            };
            out.push((name.to_string(), dtype, tensor.dims(), bytes));
        }
        Ok(HostTensors(out))
    }

    /// The safetensors file contents, with `metadata` in its header.
    pub fn serialize(&self, metadata: Option<HashMap<String, String>>) -> Result<Vec<u8>> {
        let views = self
            .0
            .iter()
            .map(|(name, dtype, dims, bytes)| {
                TensorView::new(*dtype, dims.clone(), bytes)
                    .map(|view| (name.as_str(), view))
                    .map_err(|e| Error::Data(format!("safetensors view of `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(views, metadata)
            .map_err(|e| Error::Data(format!("serializing safetensors: {e}")))?;
        canonical_header(bytes)
    }
}

/// The same safetensors file with its JSON header's keys sorted at every level: the `metadata`
/// map and the tensor entries serialize in hash order, so without this the same tensors and
/// metadata would give different bytes from run to run. The data section is unchanged (its
/// offsets are relative to its start); the header is padded with spaces to a multiple of 8.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>> {
    fn sorted(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            other => other,
        }
    }
    let malformed = || Error::Data("serializing safetensors: malformed header".into());
    let length: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(malformed)?;
    let end = usize::try_from(u64::from_le_bytes(length)).map_err(|_| malformed())? + 8;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..end).ok_or_else(malformed)?).map_err(|_| malformed())?;
    let mut text = serde_json::to_string(&sorted(header)).map_err(|_| malformed())?;
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - end);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[end..]);
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, fsync of the
/// directory. A crash leaves the old file or the new one, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |op: &'static str| move |source| Error::Io { op, path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = fs::File::create(&tmp).map_err(io("creating a temporary file for"))?;
    file.write_all(bytes).map_err(io("writing"))?;
    file.sync_all().map_err(io("syncing"))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("renaming the temporary file onto"))?;
    if let Ok(handle) = fs::File::open(dir) {
        // Persists the rename; some filesystems refuse to sync a directory, which is harmless.
        let _ = handle.sync_all();
    }
    Ok(())
}

/// Saves every tensor of `params` to `path` (atomically) under its name.
pub fn save(params: &ParamStore, path: &Path) -> Result<()> {
    let host = HostTensors::from_tensors(params.iter().map(|(name, p)| (name, &p.tensor)))?;
    write_atomic(path, &host.serialize(None)?)
}

/// Reads a safetensors file into named host tensors: `F32` data (F16, BF16 and F64 converted)
/// and `I64` data (other integer types converted).
pub fn read(path: &Path) -> Result<HostFile> {
    let bytes = fs::read(path).map_err(|source| Error::Io {
        op: "reading checkpoint",
        path: path.to_path_buf(),
        source,
    })?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::Data(format!("{}: not a safetensors file ({e})", path.display())))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let data = host_data(view.dtype(), view.data()).ok_or_else(|| {
            Error::Data(format!(
                "{}: tensor `{name}` has unsupported dtype {:?}",
                path.display(),
                view.dtype()
            ))
        })?;
        let dtype = match data {
            HostData::F32(_) => DType::F32,
            HostData::I64(_) => DType::I64,
        };
        out.insert(name, (dtype, view.shape().to_vec(), data));
    }
    Ok(out)
}

/// Tensors read from a file: name to dtype, shape and values.
pub type HostFile = BTreeMap<String, (DType, Vec<usize>, HostData)>;

/// Values of a tensor read from a file.
#[derive(Debug, Clone)]
pub enum HostData {
    /// Floating point, converted to `f32`.
    F32(Vec<f32>),
    /// Integers, converted to `i64`.
    I64(Vec<i64>),
}

fn host_data(dtype: Dtype, bytes: &[u8]) -> Option<HostData> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Some(match dtype {
        Dtype::F32 => {
            HostData::F32(chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        Dtype::F64 => HostData::F32(
            chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect(),
        ),
        Dtype::F16 => {
            HostData::F32(chunks(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect())
        }
        Dtype::BF16 => HostData::F32(
            chunks(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect(),
        ),
        Dtype::I64 => {
            HostData::I64(chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
        }
        Dtype::I32 => HostData::I64(
            chunks(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        ),
        Dtype::U8 => HostData::I64(bytes.iter().map(|&b| i64::from(b)).collect()),
        _ => return None,
    })
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f32::from(bits & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 if mantissa == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15),
    }
}

/// Loads `path` into `params`: every tensor of the store must be in the file with its shape
/// and dtype (optional ones, [`is_optional`], may be missing and keep their values), and the
/// file may hold nothing else. All differences are reported in one error naming each tensor.
pub fn load(params: &mut ParamStore, path: &Path) -> Result<()> {
    load_host(params, read(path)?, path)
}

/// [`load`] from tensors already read from `path` (named in errors).
pub fn load_host(params: &mut ParamStore, file: HostFile, path: &Path) -> Result<()> {
    let mut problems = Vec::new();
    for name in params.names() {
        let want = params.get(name)?;
        match file.get(name) {
            None if is_optional(name) => {}
            None => problems.push(format!("missing `{name}` {:?}", want.dims())),
            Some((dtype, dims, _)) if *dims != want.dims() || *dtype != want.dtype() => {
                problems.push(format!(
                    "`{name}` is {dtype:?} {dims:?} in the file, the network expects {:?} {:?}",
                    want.dtype(),
                    want.dims()
                ))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<&String> = file.keys().filter(|name| params.param(name).is_err()).collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "unexpected {}",
            unexpected.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    if !problems.is_empty() {
        return Err(Error::Data(format!(
            "checkpoint {} does not fit the network ({} problems): {}",
            path.display(),
            problems.len(),
            problems.join("; ")
        )));
    }
    let backend = params.backend().clone();
    for (name, (_, dims, data)) in &file {
        let tensor = match data {
            HostData::F32(values) => backend.from_f32(values, dims)?,
            HostData::I64(values) => backend.from_i64(values, dims)?,
        };
        params.set(name, &tensor)?;
    }
    Ok(())
}
