use std::sync::{Arc, OnceLock};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The class-conditional buffer of unit-norm ID embeddings (Appendix D.1): `[c, s, d]`, class
/// `i` holding `counts[i] <= s` valid rows first and zero padding after them.
#[derive(Debug, Clone)]
pub struct ClassBank {
    embeddings: Tensor,
    counts: Vec<usize>,
    /// `[c, s]`: 1 for valid rows, 0 for padding (built once; samplers read it every step).
    valid_mask: Tensor,
    /// Class moments, built on first use.
    moments: OnceLock<super::ClassMoments>,
    /// `[c, d]` sums of each class's valid rows, built on first use (prototypes and moments).
    class_sums: OnceLock<Tensor>,
}

impl ClassBank {
    /// A bank from a padded `[c, s, d]` tensor and the valid-row count of each class.
    pub fn new(embeddings: Tensor, counts: Vec<usize>) -> Result<Self> {
        let dims = embeddings.dims();
        let [classes, capacity, _] = dims[..] else {
            return Err(Error::shape("ClassBank::new", format!("needs [c, s, d], got {dims:?}")));
        };
        if counts.len() != classes {
            return Err(Error::shape(
                "ClassBank::new",
                format!("{} counts for {classes} classes", counts.len()),
            ));
        }
        if let Some((class, &n)) = counts.iter().enumerate().find(|(_, &n)| n > capacity) {
            return Err(Error::shape(
                "ClassBank::new",
                format!("class {class} counts {n} > capacity {capacity}"),
            ));
        }
        let mask = crate::tensor::valid_row_mask(&counts, capacity);
        let valid_mask = embeddings.backend().from_f32(&mask, &[classes, capacity])?;
        Ok(ClassBank {
            embeddings,
            counts,
            valid_mask,
            moments: OnceLock::new(),
            class_sums: OnceLock::new(),
        })
    }

    /// Buckets row-major `embeddings` (`n` rows of `dim`) by `labels`, keeping the last
    /// `capacity` rows of each class (the buffer drops the oldest first).
    pub fn from_rows(
        backend: &Arc<dyn Backend>,
        embeddings: &[f32],
        dim: usize,
        labels: &[usize],
        num_classes: usize,
        capacity: usize,
    ) -> Result<Self> {
        if dim == 0 || embeddings.len() != labels.len() * dim {
            return Err(Error::Data(format!(
                "{} values do not make {} rows of dimension {dim}",
                embeddings.len(),
                labels.len()
            )));
        }
        // Rows already in the buffer's layout (grouped by class, `capacity` each) go as they are.
        let full = labels.len() == num_classes * capacity
            && labels.iter().enumerate().all(|(i, &label)| label == i / capacity.max(1));
        if full {
            let tensor = backend.from_f32(embeddings, &[num_classes, capacity, dim])?;
            return ClassBank::new(tensor, vec![capacity; num_classes]);
        }
        let mut per_class: Vec<Vec<&[f32]>> = vec![Vec::new(); num_classes];
        for (row, &label) in embeddings.chunks(dim).zip(labels) {
            let class = per_class.get_mut(label).ok_or_else(|| {
                Error::Data(format!("label {label} out of range for {num_classes} classes"))
            })?;
            class.push(row);
        }
        let mut padded = vec![0.0f32; num_classes * capacity * dim];
        let mut counts = Vec::with_capacity(num_classes);
        for (class, rows) in per_class.iter().enumerate() {
            let kept = &rows[rows.len().saturating_sub(capacity)..];
            for (slot, row) in kept.iter().enumerate() {
                let start = (class * capacity + slot) * dim;
                padded[start..start + dim].copy_from_slice(row);
            }
            counts.push(kept.len());
        }
        ClassBank::new(backend.from_f32(&padded, &[num_classes, capacity, dim])?, counts)
    }

    /// The padded `[c, s, d]` embeddings.
    pub fn embeddings(&self) -> &Tensor {
        &self.embeddings
    }

    /// Valid rows per class.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// Number of classes `c`.
    pub fn num_classes(&self) -> usize {
        self.counts.len()
    }

    /// Rows per class `s`, padding included.
    pub fn capacity(&self) -> usize {
        self.embeddings.dims()[1]
    }

    /// Embedding dimension `d`.
    pub fn dim(&self) -> usize {
        self.embeddings.dims()[2]
    }

    /// `[c, s]` mask: 1 for valid rows, 0 for padding.
    pub fn valid_mask(&self) -> Result<Tensor> {
        Ok(self.valid_mask.clone())
    }

    /// Mean, covariance and radius of every class ([`super::ClassMoments`]), computed on first
    /// use and kept with the bank.
    pub fn moments(&self) -> Result<&super::ClassMoments> {
        if let Some(moments) = self.moments.get() {
            return Ok(moments);
        }
        let moments = super::ClassMoments::of(self)?;
        Ok(self.moments.get_or_init(|| moments))
    }

    /// Whether [`ClassBank::moments`] has been computed for this bank.
    pub fn has_moments(&self) -> bool {
        self.moments.get().is_some()
    }

    /// `[c, d]`: the sum of each class's valid rows (padding is zero, so the sum over all rows
    /// sees only them), computed on first use and kept with the bank.
    pub fn class_sums(&self) -> Result<&Tensor> {
        if let Some(sums) = self.class_sums.get() {
            return Ok(sums);
        }
        // A product with a row of ones: some backends reduce over a middle dim slowly.
        let (classes, capacity) = (self.num_classes(), self.capacity());
        let ones = self.embeddings.backend().full(1.0, &[classes, 1, capacity])?;
        let sums = ones.matmul(&self.embeddings)?.reshape(&[classes, self.dim()])?;
        Ok(self.class_sums.get_or_init(|| sums))
    }

    /// Unit-norm class means `[c, d]`.
    pub fn prototypes(&self) -> Result<Tensor> {
        if let Some(class) = self.counts.iter().position(|&n| n == 0) {
            return Err(Error::Data(format!("class {class} has no embeddings, so no prototype")));
        }
        self.class_sums()?.l2_normalize(1)
    }
}

/// The class pair `(u, v)` each chain sits between, on the host and as `I64` tensors.
#[derive(Debug, Clone)]
pub struct ChainPairs {
    /// `(u, v)` per chain.
    pub pairs: Vec<(usize, usize)>,
    /// `u` per chain, `[m]` `I64`.
    pub first: Tensor,
    /// `v` per chain, `[m]` `I64`.
    pub second: Tensor,
}

impl ChainPairs {
    /// Uploads `pairs` to `backend`.
    pub fn new(backend: &Arc<dyn Backend>, pairs: Vec<(usize, usize)>) -> Result<Self> {
        let first: Vec<i64> = pairs.iter().map(|&(u, _)| u as i64).collect();
        let second: Vec<i64> = pairs.iter().map(|&(_, v)| v as i64).collect();
        Ok(ChainPairs {
            first: backend.from_i64(&first, &[first.len()])?,
            second: backend.from_i64(&second, &[second.len()])?,
            pairs,
        })
    }

    /// Number of chains.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there are no chains.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}
