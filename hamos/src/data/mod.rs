//! Image data sets: [`load`] reads any [`DatasetSpec`] into an [`ImageSet`] (u8 pixels, CHW per
//! image); [`load_all`] builds a run's training, validation, test and OOD sets from its
//! [`DataConfig`]; [`augment`] normalizes and augments images and [`loader`] turns index lists
//! into batches, on background threads if asked.
//!
//! ```
//! # fn main() -> hamos_api::Result<()> {
//! use hamos::data::{load, DatasetSpec};
//! let mnist = load(&DatasetSpec::Shipped { name: "mnist".into() }, 0, None)?;
//! assert_eq!((mnist.len(), mnist.shape, mnist.classes), (2000, [1, 28, 28], 10));
//! # Ok(()) }
//! ```
//!
//! Every random draw comes from a ChaCha8 generator keyed by the run's seed and what the draw
//! is for (noise, split, epoch order, batch), so results never depend on threading.

pub mod augment;
mod cifar;
mod idx;
mod images;
pub mod loader;
mod split;

use std::path::PathBuf;

use hamos_api::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::DataConfig;

pub use crate::config::DatasetSpec;
pub use augment::{Augmenter, Normalizer, ViewAugmenter, ViewParams};
pub use loader::{Batch, BatchOptions, BatchPlan, Batches};
pub use split::{check_id_set, limit_per_class, split_validation};

/// The data sets shipped in the repository's `data/` folder (see `data/README.md`).
pub const SHIPPED: [&str; 5] =
    ["fashion_mnist_train", "fashion_mnist_test", "mnist", "animal_mnist", "textures"];

/// Images of one shape with optional integer labels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// Name used in messages and reports.
    pub name: String,
    /// Channels, height, width of every image.
    pub shape: [usize; 3],
    /// `len() * c * h * w` bytes, image after image, each in CHW order.
    pub pixels: Vec<u8>,
    /// One label per image, in `0..classes`; `None` for unlabelled (OOD) sets.
    pub labels: Option<Vec<i64>>,
    /// Number of classes (0 when unlabelled).
    pub classes: usize,
}

impl ImageSet {
    /// Bytes per image (`c * h * w`).
    pub fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len().checked_div(self.image_len()).unwrap_or(0)
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pixels of image `i` (CHW). Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Images per class (`classes` entries; empty when unlabelled).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes];
        for &label in self.labels.iter().flatten() {
            if let Some(c) = usize::try_from(label).ok().and_then(|l| counts.get_mut(l)) {
                *c += 1;
            }
        }
        counts
    }

    /// The images at `indices` (in that order, repeats allowed) with their labels.
    pub fn subset(&self, indices: &[usize]) -> Result<ImageSet> {
        let n = self.len();
        if let Some(bad) = indices.iter().find(|&&i| i >= n) {
            return Err(Error::Data(format!("{}: index {bad} out of range for {n} images", self.name)));
        }
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        let labels = match &self.labels {
            None => None,
            Some(l) => Some(
                indices
                    .iter()
                    .map(|&i| {
                        let missing = || Error::Data(format!("{}: image {i} has no label", self.name));
                        l.get(i).copied().ok_or_else(missing)
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        Ok(ImageSet { name: self.name.clone(), shape: self.shape, pixels, labels, classes: self.classes })
    }
}

/// The folder shipped sets are read from: `HAMOS_DATA_DIR` if set, else the repository's `data/`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("HAMOS_DATA_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data")),
    }
}

/// The seed [`load`] gets for OOD set number `index` of a run seeded with `run_seed`, so that
/// two noise sets of one run differ.
pub fn noise_seed(run_seed: u64, index: usize) -> u64 {
    let mut rng = derived_rng(run_seed, Stream::NoiseSeed, index as u64, 0);
    rng.random()
}

/// Loads one data set. `seed` drives generated sets (noise; see [`noise_seed`]). With
/// `id_shape` (the ID images' shape) the images are converted to its channel count (grey to RGB
/// by repetition, RGB to grey by luma) and must match its size: nothing is resized.
pub fn load(spec: &DatasetSpec, seed: u64, id_shape: Option<[usize; 3]>) -> Result<ImageSet> {
    let set = match spec {
        DatasetSpec::Shipped { name } => load_shipped(name)?,
        DatasetSpec::Idx { images, labels } => idx::load_idx(images, labels.as_deref())?,
        DatasetSpec::Cifar { files, classes } => cifar::load_cifar(files, *classes)?,
        DatasetSpec::ImageList { root, list } => images::load_image_list(root, list, id_shape)?,
        DatasetSpec::ImageFolder { root } => images::load_image_folder(root, id_shape)?,
        DatasetSpec::Noise { kind, count } => {
            let shape = id_shape.ok_or_else(|| {
                Error::Data(format!("{kind} noise takes the ID images' shape, and none was given"))
            })?;
            noise(kind, *count, shape, seed)?
        }
    };
    match id_shape {
        Some(shape) => conform(set, shape),
        None => Ok(set),
    }
}

/// A run's data sets, from [`load_all`].
#[derive(Debug, Clone)]
pub struct DataSets {
    /// ID training images (validation held out, `train_limit` applied).
    pub train: ImageSet,
    /// ID validation images.
    pub validation: ImageSet,
    /// ID test images.
    pub test: ImageSet,
    /// OOD test sets, named as in the config.
    pub ood: Vec<ImageSet>,
}

/// Loads and checks every set of `config`: `train_limit` is applied to the training data
/// first, then the validation split is held out of what remains; the test and OOD sets must
/// have the training images' shape, and the normalization one value per channel.
pub fn load_all(config: &DataConfig, seed: u64) -> Result<DataSets> {
    let mut train = load(&config.train, seed, None)?;
    check_id_set(&train, train.classes)?;
    if config.mean.len() != train.shape[0] {
        return Err(Error::invalid(
            "data.mean",
            format!("{} values for {}-channel images ({})", config.mean.len(), train.shape[0], train.name),
        ));
    }
    if config.train_limit > 0 {
        train = limit_per_class(&train, config.train_limit)?;
    }
    let (train, validation) = split_validation(&train, config.validation_fraction, seed)?;
    let test = load(&config.test, seed, Some(train.shape))?;
    check_id_set(&test, train.classes)?;
    let mut ood = Vec::with_capacity(config.ood.len());
    for (index, set) in config.ood.iter().enumerate() {
        let mut images = load(&set.dataset, noise_seed(seed, index), Some(train.shape))?;
        images.name.clone_from(&set.name);
        ood.push(images);
    }
    Ok(DataSets { train, validation, test, ood })
}

fn load_shipped(name: &str) -> Result<ImageSet> {
    if !SHIPPED.contains(&name) {
        return Err(Error::Data(format!("no shipped data set `{name}`; shipped: {}", SHIPPED.join(", "))));
    }
    let dir = data_dir();
    let images = dir.join(format!("{name}-images-idx3-ubyte.gz"));
    let labels = dir.join(format!("{name}-labels-idx1-ubyte.gz"));
    let mut set = idx::load_idx(&images, Some(&labels))?;
    set.name = name.to_string();
    Ok(set)
}

/// Converts the channel count to `shape`'s and checks the size.
fn conform(mut set: ImageSet, shape: [usize; 3]) -> Result<ImageSet> {
    let [c, h, w] = shape;
    if set.shape[1..] != shape[1..] {
        return Err(Error::Data(format!(
            "{}: images are {}x{} (shape {:?}), the ID images {h}x{w} (shape {shape:?}); nothing is resized",
            set.name, set.shape[1], set.shape[2], set.shape
        )));
    }
    if set.shape[0] != c {
        set.pixels = images::convert_channels(&set.pixels, set.shape[0], c, h * w)
            .map_err(|msg| Error::Data(format!("{}: {msg}", set.name)))?;
        set.shape = shape;
    }
    Ok(set)
}

fn noise(kind: &str, count: usize, shape: [usize; 3], seed: u64) -> Result<ImageSet> {
    let n = count * shape.iter().product::<usize>();
    let mut rng = derived_rng(seed, Stream::Noise, 0, 0);
    // Pixel value v maps to round(255 v), so that v survives the /255 of normalization.
    let quantize = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let pixels = match kind {
        "gaussian" => {
            // N(0.5, 0.25): mean 0.5, standard deviation 0.25.
            let normal =
                rand_distr::Normal::new(0.5, 0.25).map_err(|e| Error::Data(format!("noise: {e}")))?;
            (0..n).map(|_| quantize(rng.sample(normal))).collect()
        }
        "uniform" => (0..n).map(|_| quantize(rng.random::<f64>())).collect(),
        other => return Err(Error::Data(format!("noise kind `{other}`: use `gaussian` or `uniform`"))),
    };
    Ok(ImageSet { name: format!("{kind}_noise"), shape, pixels, labels: None, classes: 0 })
}

/// What a derived random stream is for; part of its key so that streams never coincide.
#[derive(Clone, Copy)]
pub(crate) enum Stream {
    NoiseSeed = 1,
    Noise = 2,
    Split = 3,
    EpochOrder = 4,
    Batch = 5,
}

/// A generator keyed by (seed, stream, a, b): distinct keys give independent streams.
pub(crate) fn derived_rng(seed: u64, stream: Stream, a: u64, b: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    for (chunk, word) in key.chunks_exact_mut(8).zip([seed, stream as u64, a, b]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// `path: msg` as a data error.
pub(crate) fn data_err(path: &std::path::Path, msg: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: {msg}", path.display()))
}
