//! Class-labelled embedding files: `.npz` (arrays `embeddings`, `labels`), `.safetensors`
//! (tensors `embeddings`, `labels`), or a pair of `.npy` files; and synthesized outliers written
//! back in the same format.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use hamos_api::{Error, OutlierTag, Result};
use npyz::WriterBuilder;

/// Embedding file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// numpy `.npz` archive.
    Npz,
    /// numpy `.npy` (embeddings and labels in two files).
    Npy,
    /// Hugging Face `.safetensors`.
    Safetensors,
}

impl Format {
    /// The format of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => Ok(Format::Npz),
            Some("npy") => Ok(Format::Npy),
            Some("safetensors") => Ok(Format::Safetensors),
            _ => Err(Error::Data(format!(
                "{}: unknown format; use .npz, .npy (with --labels) or .safetensors",
                path.display()
            ))),
        }
    }
}

/// A raw array: shape, numpy-style type code (`f4`, `i8`, ...) and values.
struct RawArray {
    shape: Vec<usize>,
    kind: String,
    values: Values,
}

/// Values as read: `f32` kept as is (the usual embeddings, read straight into place), anything
/// else widened to `f64`.
enum Values {
    F32(Vec<f32>),
    Wide(Vec<f64>),
}

/// Validated, class-labelled unit-norm embeddings.
#[derive(Debug, Clone)]
pub struct LabelledEmbeddings {
    /// Row-major `[n, dim]`, unit-norm rows.
    pub rows: Vec<f32>,
    /// Embedding dimension.
    pub dim: usize,
    /// Class of each row, in `0..num_classes`.
    pub labels: Vec<usize>,
    /// Number of classes.
    pub num_classes: usize,
    /// Corrections applied to the input, for the user to see.
    pub corrections: Vec<String>,
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_path_buf(), source }
}

fn data_error(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: {msg}", path.display()))
}

fn read_npy<R: std::io::Read>(npy: npyz::NpyFile<R>, path: &Path, name: &str) -> Result<RawArray> {
    let shape: Vec<usize> = npy.shape().iter().map(|&n| n as usize).collect();
    let (kind, little) = match npy.dtype() {
        npyz::DType::Plain(ts) => {
            let text = ts.to_string();
            (text.trim_start_matches(['<', '>', '|', '=']).to_string(), !text.starts_with('>'))
        }
        other => return Err(data_error(path, format!("`{name}` has unsupported dtype {other:?}"))),
    };
    let fortran = npy.order() == npyz::Order::Fortran;
    let count: usize = shape.iter().product();
    let mut reader = npy.into_inner();
    let truncated =
        |e: std::io::Error| data_error(path, format!("reading `{name}` ({count} values of {kind}): {e}"));
    let values = if kind == "f4" {
        // Straight into place: reading value by value, or through a byte copy, costs far more.
        let mut values = vec![0.0f32; count];
        reader.read_exact(bytemuck::cast_slice_mut(&mut values)).map_err(truncated)?;
        if little != cfg!(target_endian = "little") {
            values.iter_mut().for_each(|v| *v = f32::from_bits(v.to_bits().swap_bytes()));
        }
        Values::F32(transposed(values, &shape, fortran, path, name)?)
    } else {
        let width = match kind.as_str() {
            "f8" | "i8" | "u8" => 8,
            "i4" | "u4" => 4,
            "i2" | "u2" => 2,
            "i1" | "u1" => 1,
            other => return Err(data_error(path, format!("`{name}` has unsupported dtype {other}"))),
        };
        let mut bytes = vec![0u8; count * width];
        reader.read_exact(&mut bytes).map_err(truncated)?;
        let values = match kind.as_str() {
            "f8" => decode(&bytes, little, f64::from_le_bytes, f64::from_be_bytes, |v| v),
            "i8" => decode(&bytes, little, i64::from_le_bytes, i64::from_be_bytes, |v| v as f64),
            "u8" => decode(&bytes, little, u64::from_le_bytes, u64::from_be_bytes, |v| v as f64),
            "i4" => decode(&bytes, little, i32::from_le_bytes, i32::from_be_bytes, f64::from),
            "u4" => decode(&bytes, little, u32::from_le_bytes, u32::from_be_bytes, f64::from),
            "i2" => decode(&bytes, little, i16::from_le_bytes, i16::from_be_bytes, f64::from),
            "u2" => decode(&bytes, little, u16::from_le_bytes, u16::from_be_bytes, f64::from),
            "i1" => bytes.iter().map(|&b| f64::from(b as i8)).collect(),
            _ => bytes.iter().map(|&b| f64::from(b)).collect(),
        };
        Values::Wide(transposed(values, &shape, fortran, path, name)?)
    };
    Ok(RawArray { shape, kind, values })
}

/// Row-major values of a C- or Fortran-ordered array.
fn transposed<T: Copy>(
    values: Vec<T>,
    shape: &[usize],
    fortran: bool,
    path: &Path,
    name: &str,
) -> Result<Vec<T>> {
    match (fortran, shape) {
        (false, _) | (true, [_]) => Ok(values),
        // Column-major [n, d]: value (r, c) sits at c n + r.
        (true, &[rows, cols]) => Ok((0..rows * cols).map(|i| values[(i % cols) * rows + i / cols]).collect()),
        (true, _) => Err(data_error(path, format!("`{name}` is Fortran-ordered with shape {shape:?}"))),
    }
}

/// Values of `N` bytes each, little- or big-endian, as `f64`.
fn decode<const N: usize, T>(
    bytes: &[u8],
    little: bool,
    from_le: fn([u8; N]) -> T,
    from_be: fn([u8; N]) -> T,
    widen: fn(T) -> f64,
) -> Vec<f64> {
    let from = if little { from_le } else { from_be };
    bytes.chunks_exact(N).map(|c| widen(from(<[u8; N]>::try_from(c).unwrap_or([0; N])))).collect()
}

fn read_npz(path: &Path) -> Result<(RawArray, RawArray)> {
    let mut archive = npyz::npz::NpzArchive::open(path).map_err(io_error("reading embeddings", path))?;
    let mut take = |name: &str| -> Result<RawArray> {
        let names: Vec<String> = archive.array_names().map(str::to_string).collect();
        match archive.by_name(name).map_err(|e| data_error(path, e))? {
            Some(npy) => read_npy(npy, path, name),
            None => Err(data_error(path, format!("no array `{name}`; it holds {names:?}"))),
        }
    };
    Ok((take("embeddings")?, take("labels")?))
}

fn read_single_npy(path: &Path, name: &str) -> Result<RawArray> {
    let file = File::open(path).map_err(io_error("reading embeddings", path))?;
    let npy = npyz::NpyFile::new(BufReader::new(file)).map_err(|e| data_error(path, e))?;
    read_npy(npy, path, name)
}

fn read_safetensors(path: &Path) -> Result<(RawArray, RawArray)> {
    let bytes = std::fs::read(path).map_err(io_error("reading embeddings", path))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| data_error(path, e))?;
    let take = |name: &str| -> Result<RawArray> {
        let view = tensors
            .tensor(name)
            .map_err(|_| data_error(path, format!("no tensor `{name}`; it holds {:?}", tensors.names())))?;
        let data = view.data();
        use safetensors::Dtype as D;
        if view.dtype() == D::F32 {
            let values = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            return Ok(RawArray {
                shape: view.shape().to_vec(),
                kind: "f4".into(),
                values: Values::F32(values),
            });
        }
        let (kind, values): (&str, Vec<f64>) = match view.dtype() {
            D::F64 => (
                "f8",
                data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect(),
            ),
            D::I64 => (
                "i8",
                data.chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64)
                    .collect(),
            ),
            D::I32 => (
                "i4",
                data.chunks_exact(4)
                    .map(|b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                    .collect(),
            ),
            D::U8 => ("u1", data.iter().map(|&b| f64::from(b)).collect()),
            other => return Err(data_error(path, format!("`{name}` has unsupported dtype {other:?}"))),
        };
        Ok(RawArray { shape: view.shape().to_vec(), kind: kind.to_string(), values: Values::Wide(values) })
    };
    Ok((take("embeddings")?, take("labels")?))
}

/// Reads and validates embeddings and labels. `labels_path` is required for `.npy`.
/// `num_classes`, when given, bounds the labels; otherwise it is `max(label) + 1`.
pub fn read(
    path: &Path,
    labels_path: Option<&Path>,
    num_classes: Option<usize>,
) -> Result<LabelledEmbeddings> {
    let (embeddings, labels) = match Format::of(path)? {
        Format::Npz => read_npz(path)?,
        Format::Safetensors => read_safetensors(path)?,
        Format::Npy => {
            let labels_path = labels_path.ok_or_else(|| {
                data_error(path, "a .npy file holds one array: pass the labels with --labels FILE.npy")
            })?;
            (read_single_npy(path, "embeddings")?, read_single_npy(labels_path, "labels")?)
        }
    };
    validate(path, embeddings, labels, num_classes)
}

fn validate(
    path: &Path,
    embeddings: RawArray,
    labels: RawArray,
    num_classes: Option<usize>,
) -> Result<LabelledEmbeddings> {
    let mut corrections = Vec::new();
    let [n, dim] = embeddings.shape[..] else {
        return Err(data_error(
            path,
            format!("`embeddings` must be [n, d], got shape {:?}", embeddings.shape),
        ));
    };
    if n == 0 || dim == 0 {
        return Err(data_error(path, format!("`embeddings` is empty: shape [{n}, {dim}]")));
    }
    if !embeddings.kind.starts_with('f') {
        return Err(data_error(path, format!("`embeddings` must be float, got {}", embeddings.kind)));
    }
    if embeddings.kind != "f4" {
        corrections.push(format!("embeddings converted from {} to f32", embeddings.kind));
    }
    if labels.shape != [n] {
        return Err(data_error(
            path,
            format!("`labels` must be [{n}] to match the embeddings, got {:?}", labels.shape),
        ));
    }
    if labels.kind.starts_with('f') {
        return Err(data_error(path, format!("`labels` must be integers, got {}", labels.kind)));
    }
    let labels: Vec<i64> = match &labels.values {
        Values::Wide(v) => v.iter().map(|&v| v as i64).collect(),
        Values::F32(v) => v.iter().map(|&v| v as i64).collect(),
    };
    if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l < 0) {
        return Err(data_error(path, format!("label {label} of row {row} is negative")));
    }
    let max_label = labels.iter().copied().max().unwrap_or(0) as usize;
    let classes = num_classes.unwrap_or(max_label + 1);
    if max_label >= classes {
        return Err(data_error(path, format!("label {max_label} out of range for {classes} classes")));
    }
    let mut counts = vec![0usize; classes];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    if let Some(empty) = counts.iter().position(|&c| c == 0) {
        return Err(data_error(
            path,
            format!("class {empty} has no embeddings (every class in 0..{classes} needs some)"),
        ));
    }
    if classes < 2 {
        return Err(data_error(path, "outlier synthesis needs at least 2 classes"));
    }
    // Normalized in place (f32 input) or narrowed (wider input); norms in f64.
    let (mut rows, wide) = match embeddings.values {
        Values::F32(v) => (v, None),
        Values::Wide(v) => (Vec::with_capacity(n * dim), Some(v)),
    };
    let (mut renormalized, mut worst) = (0usize, 0.0f64);
    for row in 0..n {
        let span = row * dim..(row + 1) * dim;
        let norm = match &wide {
            Some(v) => row_norm(&v[span.clone()]),
            None => row_norm(&rows[span.clone()]),
        };
        if !norm.is_finite() {
            return Err(data_error(path, format!("row {row} of `embeddings` is not finite (NaN or inf)")));
        }
        if norm < 1e-12 {
            return Err(data_error(path, format!("row {row} of `embeddings` is zero and has no direction")));
        }
        if (norm - 1.0).abs() > 1e-3 {
            renormalized += 1;
            worst = worst.max((norm - 1.0).abs());
        }
        match &wide {
            Some(v) => rows.extend(v[span].iter().map(|x| (x / norm) as f32)),
            None => rows[span].iter_mut().for_each(|x| *x = (f64::from(*x) / norm) as f32),
        }
    }
    if renormalized > 0 {
        corrections.push(format!(
            "{renormalized} of {n} rows were not unit-norm (off by up to {worst:.3}); they were normalized"
        ));
    }
    Ok(LabelledEmbeddings {
        rows,
        dim,
        labels: labels.iter().map(|&l| l as usize).collect(),
        num_classes: classes,
        corrections,
    })
}

/// `|v|` in `f64`, in eight partial sums; NaN or infinite when a value is.
fn row_norm<T: Copy + Into<f64>>(values: &[T]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|&x| x.into().powi(2)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            let x: f64 = x.into();
            *lane += x * x;
        }
    }
    (lanes.iter().sum::<f64>() + tail).sqrt()
}

fn write_npy<T: npyz::AutoSerialize>(
    path: &Path,
    shape: &[u64],
    values: impl IntoIterator<Item = T>,
) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(File::create(path)?);
    let mut writer = npyz::WriteOptions::new().default_dtype().shape(shape).writer(file).begin_nd()?;
    writer.extend(values)?;
    writer.finish()
}

/// Writes outliers `[n, dim]` and their tags next to each other in `format`: `.npz` and
/// `.safetensors` hold `outliers` (f32) and `chain`, `class_u`, `class_v`, `round` (i64);
/// `.npy` writes the outliers to `path` and the tags as `[n, 4]` to `<stem>.tags.npy`.
pub fn write_outliers(
    path: &Path,
    outliers: &[f32],
    dim: usize,
    tags: &[OutlierTag],
) -> Result<Vec<PathBuf>> {
    let n = tags.len();
    let columns: [(&str, Vec<i64>); 4] = [
        ("chain", tags.iter().map(|t| t.chain as i64).collect()),
        ("class_u", tags.iter().map(|t| t.class_u as i64).collect()),
        ("class_v", tags.iter().map(|t| t.class_v as i64).collect()),
        ("round", tags.iter().map(|t| t.round as i64).collect()),
    ];
    let err = io_error("writing outliers", path);
    match Format::of(path)? {
        Format::Npz => {
            let write = || -> std::io::Result<()> {
                let mut npz = npyz::npz::NpzWriter::create(path)?;
                // Stored, as numpy's `savez` writes: deflating took most of `hamos synth`'s time.
                let options =
                    zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
                let mut w = npz
                    .array::<f32>("outliers", options)?
                    .default_dtype()
                    .shape(&[n as u64, dim as u64])
                    .begin_nd()?;
                w.extend(outliers.iter().copied())?;
                w.finish()?;
                for (name, values) in &columns {
                    let mut w =
                        npz.array::<i64>(name, options)?.default_dtype().shape(&[n as u64]).begin_nd()?;
                    w.extend(values.iter().copied())?;
                    w.finish()?;
                }
                Ok(())
            };
            write().map_err(err)?;
            Ok(vec![path.to_path_buf()])
        }
        Format::Npy => {
            let tags_path = path.with_extension("tags.npy");
            let write = || -> std::io::Result<()> {
                write_npy(path, &[n as u64, dim as u64], outliers.iter().copied())?;
                let flat: Vec<i64> = (0..n).flat_map(|i| columns.iter().map(move |(_, c)| c[i])).collect();
                write_npy(&tags_path, &[n as u64, 4], flat)
            };
            write().map_err(err)?;
            Ok(vec![path.to_path_buf(), tags_path])
        }
        Format::Safetensors => {
            let outlier_bytes: Vec<u8> = outliers.iter().flat_map(|v| v.to_le_bytes()).collect();
            let column_bytes: Vec<(&str, Vec<u8>)> = columns
                .iter()
                .map(|(name, c)| (*name, c.iter().flat_map(|v| v.to_le_bytes()).collect()))
                .collect();
            let to_error = |e| data_error(path, e);
            let mut views = vec![(
                "outliers".to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![n, dim], &outlier_bytes)
                    .map_err(to_error)?,
            )];
            for (name, bytes) in &column_bytes {
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![n], bytes)
                    .map_err(to_error)?;
                views.push((name.to_string(), view));
            }
            safetensors::serialize_to_file(views, None::<HashMap<String, String>>, path)
                .map_err(|e| data_error(path, e))?;
            Ok(vec![path.to_path_buf()])
        }
    }
}
