//! The binary versions of CIFAR-10 and CIFAR-100: fixed-size records of label bytes (CIFAR-10:
//! the class; CIFAR-100: the coarse then the fine class) and 3072 pixel bytes, the red, green
//! and blue 32x32 planes in turn (already CHW).

use std::path::PathBuf;

use hamos_api::{Error, Result};

use super::{data_err, ImageSet};

const PIXELS: usize = 3 * 32 * 32;

/// Loads CIFAR batch files in order; `classes` is 10 or 100 (fine labels).
pub(crate) fn load_cifar(files: &[PathBuf], classes: usize) -> Result<ImageSet> {
    let label_bytes = match classes {
        10 => 1,
        100 => 2,
        other => return Err(Error::Data(format!("CIFAR has 10 or 100 classes, not {other}"))),
    };
    if files.is_empty() {
        return Err(Error::Data("CIFAR: no files given".into()));
    }
    let record = label_bytes + PIXELS;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in files {
        let bytes =
            std::fs::read(path).map_err(|source| Error::Io { op: "reading", path: path.clone(), source })?;
        if bytes.len() % record != 0 {
            return Err(data_err(
                path,
                format!(
                    "{} bytes is not a whole number of CIFAR-{classes} records of {record} bytes \
                     ({label_bytes} label byte(s) + {PIXELS} pixels)",
                    bytes.len()
                ),
            ));
        }
        pixels.reserve(bytes.len() / record * PIXELS);
        for (i, rec) in bytes.chunks_exact(record).enumerate() {
            // The fine label is the last label byte in both layouts.
            let label = rec[label_bytes - 1];
            if usize::from(label) >= classes {
                return Err(data_err(path, format!("record {i}: label {label} is not in 0..{classes}")));
            }
            labels.push(i64::from(label));
            pixels.extend_from_slice(&rec[label_bytes..]);
        }
    }
    Ok(ImageSet {
        name: format!("cifar{classes}"),
        shape: [3, 32, 32],
        pixels,
        labels: Some(labels),
        classes,
    })
}
