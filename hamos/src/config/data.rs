//! The `[data]` section of a run: where the ID training and test sets and the OOD test sets
//! come from, the validation split, normalization and the two-view augmentation. The loaders
//! live in [`crate::data`].

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use hamos_api::config::{finite_in, positive};
use hamos_api::{Error, Result};

use super::AugmentConfig;

/// One data set, by format. Paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case", deny_unknown_fields)]
pub enum DatasetSpec {
    /// A data set shipped in the repository's `data/` folder (see `data/README.md`):
    /// `fashion_mnist_train`, `fashion_mnist_test`, `mnist`, `animal_mnist`, `textures`.
    Shipped {
        /// Its name.
        name: String,
    },
    /// idx files (MNIST's format), gzipped or not; labels optional for OOD sets.
    Idx {
        /// The `idx3` images file.
        images: PathBuf,
        /// The `idx1` labels file.
        labels: Option<PathBuf>,
    },
    /// The CIFAR-10 or CIFAR-100 binary version (`data_batch_*.bin`, `train.bin`, `test.bin`).
    Cifar {
        /// The batch files, read in order.
        files: Vec<PathBuf>,
        /// 10 or 100 (fine labels).
        classes: usize,
    },
    /// An OpenOOD-style image list: a relative path and an integer label per line.
    ImageList {
        /// Folder the paths are relative to.
        root: PathBuf,
        /// The list file.
        list: PathBuf,
    },
    /// A folder of class folders of PNG or JPEG images (labels by sorted folder name).
    ImageFolder {
        /// The folder.
        root: PathBuf,
    },
    /// Noise images generated from the run's seed, never stored.
    Noise {
        /// `gaussian` (clipped N(0.5, 0.25) per pixel) or `uniform` (U[0, 1)).
        kind: String,
        /// How many images.
        count: usize,
    },
}

/// Whether an OOD test set is near (semantically close to the ID data, e.g. other digits or
/// sketches for Fashion-MNIST) or far (textures, noise), as OpenOOD v1.5 groups its sets; the
/// reports average each group separately (`near_average`, `far_average`) beside `average`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OodGroup {
    /// Near-OOD: a semantic shift with similar low-level statistics.
    Near,
    /// Far-OOD: a larger shift (textures, noise); the default of a set that does not say.
    #[default]
    Far,
}

impl OodGroup {
    /// `near` or `far`, as in the config and the reports.
    pub fn as_str(self) -> &'static str {
        match self {
            OodGroup::Near => "near",
            OodGroup::Far => "far",
        }
    }
}

impl std::fmt::Display for OodGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OOD test set, the name reports use for it and its group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodSet {
    /// Name in tables and file names.
    pub name: String,
    /// Where it comes from; its images must have the ID images' shape (nothing is resized).
    pub dataset: DatasetSpec,
    /// `near` or `far`: which average of the reports the set enters (besides `average`).
    /// Optional, default `far`: write `group = "near"` for a set semantically close to the ID
    /// data.
    #[serde(default)]
    pub group: OodGroup,
}

/// The `[data]` section. Defaults: the shipped Fashion-MNIST subset as ID data, MNIST and
/// Animal-MNIST (near-OOD), textures and two kinds of noise (far-OOD) as OOD test sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// ID training data (the validation split is held out of it).
    pub train: DatasetSpec,
    /// ID test data.
    pub test: DatasetSpec,
    /// OOD test sets; they never choose anything.
    pub ood: Vec<OodSet>,
    /// Fraction of each class of the training data held out for validation.
    pub validation_fraction: f64,
    /// Use at most this many training images, class-balanced (0: all).
    pub train_limit: usize,
    /// Per-channel mean subtracted after scaling pixels to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after that.
    pub std: Vec<f32>,
    /// The two-view augmentation of the contrastive losses.
    pub augment: AugmentConfig,
    /// Threads decoding and augmenting batches off the training thread (0: on it).
    pub loader_threads: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        let shipped = |name: &str| DatasetSpec::Shipped { name: name.into() };
        let ood = |name: &str, dataset, group| OodSet { name: name.into(), dataset, group };
        DataConfig {
            train: shipped("fashion_mnist_train"),
            test: shipped("fashion_mnist_test"),
            ood: vec![
                ood("mnist", shipped("mnist"), OodGroup::Near),
                ood("animal_mnist", shipped("animal_mnist"), OodGroup::Near),
                ood("textures", shipped("textures"), OodGroup::Far),
                ood(
                    "gaussian_noise",
                    DatasetSpec::Noise { kind: "gaussian".into(), count: 2000 },
                    OodGroup::Far,
                ),
                ood(
                    "uniform_noise",
                    DatasetSpec::Noise { kind: "uniform".into(), count: 2000 },
                    OodGroup::Far,
                ),
            ],
            validation_fraction: 0.1,
            train_limit: 0,
            // Fashion-MNIST's training-set statistics.
            mean: vec![0.2860],
            std: vec![0.3530],
            augment: AugmentConfig::default(),
            loader_threads: 1,
        }
    }
}

impl DataConfig {
    /// Checks ranges and names, naming the field.
    pub fn validate(&self) -> Result<()> {
        finite_in("data.validation_fraction", self.validation_fraction, 0.0, 0.5, true)?;
        self.augment.validate()?;
        if self.mean.is_empty() || self.mean.len() != self.std.len() {
            return Err(Error::invalid(
                "data.mean",
                format!("mean ({}) and std ({}) need one value per channel", self.mean.len(), self.std.len()),
            ));
        }
        if let Some(bad) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid("data.std", format!("{bad} must be positive")));
        }
        let mut names = std::collections::HashSet::new();
        for set in &self.ood {
            if !names.insert(set.name.as_str()) {
                return Err(Error::invalid("data.ood", format!("two OOD sets are named `{}`", set.name)));
            }
            if let DatasetSpec::Noise { kind, count } = &set.dataset {
                positive("data.ood.count", *count)?;
                if kind != "gaussian" && kind != "uniform" {
                    return Err(Error::invalid(
                        "data.ood.kind",
                        format!("`{kind}`: use `gaussian` or `uniform`"),
                    ));
                }
            }
        }
        if let DatasetSpec::Cifar { classes, .. } = &self.train {
            if *classes != 10 && *classes != 100 {
                return Err(Error::invalid(
                    "data.train.classes",
                    format!("{classes}: CIFAR has 10 or 100 classes"),
                ));
            }
        }
        Ok(())
    }
}
