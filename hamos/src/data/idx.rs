//! idx files (MNIST's format), plain or gzipped: a 4-byte magic (two zero bytes, a type code,
//! the number of dimensions), one big-endian u32 per dimension, then the data.

use std::io::Read;
use std::path::Path;

use hamos_api::{Error, Result};

use super::{data_err, ImageSet};

/// idx type code of unsigned bytes, the only one image sets use.
const UBYTE: u8 = 0x08;

/// Reads a file, decompressing it when it starts with the gzip magic (1f 8b).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io { op: "reading", path: path.into(), source })?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|source| Error::Io {
        op: "decompressing (gzip)",
        path: path.into(),
        source,
    })?;
    Ok(out)
}

/// Parses an idx file of unsigned bytes with `ndims` dimensions: (dims, data).
fn parse(path: &Path, bytes: &[u8], ndims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(data_err(path, format!("{} bytes: too short for an idx header", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(data_err(
            path,
            format!("bad magic {:02x?}: an idx file starts with two zero bytes", &bytes[..4]),
        ));
    }
    if bytes[2] != UBYTE {
        return Err(data_err(
            path,
            format!("idx type code 0x{:02x}: only unsigned bytes (0x08) are supported", bytes[2]),
        ));
    }
    if usize::from(bytes[3]) != ndims {
        return Err(data_err(path, format!("{} dimensions, expected {ndims}", bytes[3])));
    }
    if bytes.len() < header {
        return Err(data_err(
            path,
            format!("truncated: {header} header bytes expected, found {}", bytes.len()),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| data_err(path, format!("dimensions {dims:?} overflow")))?;
    let found = bytes.len() - header;
    if found < expected {
        return Err(data_err(
            path,
            format!(
                "truncated: dimensions {dims:?} need {expected} data bytes after the {header}-byte header \
                 ({} in all), found {found}",
                header + expected
            ),
        ));
    }
    if found > expected {
        return Err(data_err(
            path,
            format!("{} bytes after the {expected} data bytes of dimensions {dims:?}", found - expected),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Loads an idx3 images file (`n x h x w`, one channel) and an optional idx1 labels file.
/// Classes are `max label + 1`.
pub(crate) fn load_idx(images: &Path, labels: Option<&Path>) -> Result<ImageSet> {
    let (dims, pixels) = parse(images, &read_maybe_gz(images)?, 3)?;
    let n = dims[0];
    if dims[1] == 0 || dims[2] == 0 {
        return Err(data_err(images, format!("empty images: dimensions {dims:?}")));
    }
    let labels = match labels {
        None => None,
        Some(path) => {
            let (label_dims, bytes) = parse(path, &read_maybe_gz(path)?, 1)?;
            if label_dims[0] != n {
                return Err(data_err(
                    path,
                    format!("{} labels for the {n} images of {}", label_dims[0], images.display()),
                ));
            }
            Some(bytes.into_iter().map(i64::from).collect::<Vec<_>>())
        }
    };
    let classes = labels.as_ref().and_then(|l| l.iter().max()).map_or(0, |&m| m as usize + 1);
    let name =
        images.file_name().map_or_else(|| images.display().to_string(), |f| f.to_string_lossy().into());
    Ok(ImageSet { name, shape: [1, dims[1], dims[2]], pixels, labels, classes })
}
