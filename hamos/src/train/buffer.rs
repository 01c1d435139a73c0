//! The class-conditional FIFO buffer of projected ID embeddings (Appendix D.1): `S` rows per
//! class on the host, the oldest overwritten first, handed to the samplers as a
//! [`ClassBank`].

use std::sync::Arc;

use hamos_api::{Backend, ClassBank, Error, Result};

/// `classes` ring buffers of `capacity` unit-norm rows of dimension `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingBuffer {
    classes: usize,
    capacity: usize,
    dim: usize,
    /// `[classes, capacity, dim]`, row-major; class `c`'s valid rows are its first `counts[c]`.
    rows: Vec<f32>,
    counts: Vec<usize>,
    /// Per class, the slot the next row overwrites once the class is full.
    next: Vec<usize>,
}

impl EmbeddingBuffer {
    /// An empty buffer.
    pub fn new(classes: usize, capacity: usize, dim: usize) -> Result<Self> {
        if classes == 0 || capacity == 0 || dim == 0 {
            return Err(Error::Data(format!(
                "embedding buffer needs classes, capacity and dim >= 1, got {classes}, {capacity}, {dim}"
            )));
        }
        Ok(EmbeddingBuffer {
            classes,
            capacity,
            dim,
            rows: vec![0.0; classes * capacity * dim],
            counts: vec![0; classes],
            next: vec![0; classes],
        })
    }

    /// Pushes row-major `embeddings` (`labels.len()` rows), in order.
    pub fn push(&mut self, embeddings: &[f32], labels: &[i64]) -> Result<()> {
        if embeddings.len() != labels.len() * self.dim {
            return Err(Error::Data(format!(
                "buffer: {} values for {} rows of dimension {}",
                embeddings.len(),
                labels.len(),
                self.dim
            )));
        }
        for (row, &label) in embeddings.chunks(self.dim).zip(labels) {
            let class = usize::try_from(label)
                .ok()
                .filter(|&c| c < self.classes)
                .ok_or_else(|| Error::Data(format!("buffer: label {label} outside 0..{}", self.classes)))?;
            let slot = if self.counts[class] < self.capacity {
                self.counts[class] += 1;
                self.counts[class] - 1
            } else {
                let slot = self.next[class];
                self.next[class] = (slot + 1) % self.capacity;
                slot
            };
            let start = (class * self.capacity + slot) * self.dim;
            self.rows[start..start + self.dim].copy_from_slice(row);
        }
        Ok(())
    }

    /// Rows held per class.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// Whether every class holds at least `min` rows.
    pub fn ready(&self, min: usize) -> bool {
        self.counts.iter().all(|&n| n >= min)
    }

    /// The buffer as a sampler's bank on `backend`.
    pub fn bank(&self, backend: &Arc<dyn Backend>) -> Result<ClassBank> {
        let tensor = backend.from_f32(&self.rows, &[self.classes, self.capacity, self.dim])?;
        ClassBank::new(tensor, self.counts.clone())
    }

    /// The raw state, for checkpoints: rows, counts and next slots.
    pub fn state(&self) -> (&[f32], Vec<i64>) {
        let mut meta: Vec<i64> = self.counts.iter().map(|&n| n as i64).collect();
        meta.extend(self.next.iter().map(|&n| n as i64));
        (&self.rows, meta)
    }

    /// Restores a state saved by [`EmbeddingBuffer::state`].
    pub fn restore(&mut self, rows: Vec<f32>, meta: &[i64]) -> Result<()> {
        let bad = rows.len() != self.rows.len()
            || meta.len() != 2 * self.classes
            || meta[..self.classes].iter().any(|&n| n < 0 || n as usize > self.capacity)
            || meta[self.classes..].iter().any(|&n| n < 0 || n as usize >= self.capacity);
        if bad {
            return Err(Error::Data(
                "checkpoint: the embedding buffer does not fit this run's buffer size".into(),
            ));
        }
        self.rows = rows;
        self.counts = meta[..self.classes].iter().map(|&n| n as usize).collect();
        self.next = meta[self.classes..].iter().map(|&n| n as usize).collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_overwrites_the_oldest_row_of_its_class() {
        let mut buffer = EmbeddingBuffer::new(2, 2, 1).unwrap();
        buffer.push(&[1.0, 2.0, 3.0], &[0, 0, 1]).unwrap();
        assert_eq!(buffer.counts(), &[2, 1]);
        assert!(buffer.ready(1) && !buffer.ready(2));
        buffer.push(&[4.0, 5.0], &[0, 0]).unwrap();
        // Class 0 saw 1, 2, 4, 5: it keeps 4 and 5 (slot 0 took 4, slot 1 took 5).
        assert_eq!(&buffer.rows[..2], &[4.0, 5.0]);
        assert_eq!(buffer.rows[2], 3.0);
        assert!(buffer.push(&[1.0], &[2]).is_err());
        let (rows, meta) = buffer.state();
        let mut copy = EmbeddingBuffer::new(2, 2, 1).unwrap();
        copy.restore(rows.to_vec(), &meta).unwrap();
        assert_eq!(copy, buffer);
    }
}
