//! Epoch orders and batches: [`BatchPlan`] shuffles indices per epoch, [`Batches`] turns index
//! batches into normalized (and optionally two augmented) f32 images, inline or on background
//! threads. Batch `k` of epoch `e` draws its augmentation from a generator keyed by
//! `(seed, e, k)` alone, so the batches are the same whatever the thread count.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use hamos_api::{Error, Result};
use rand::seq::SliceRandom;

use super::augment::{Normalizer, ViewAugmenter};
use super::{derived_rng, ImageSet, Stream};

/// Batches queued ahead of the consumer in all, at least one per thread.
const PREFETCH: usize = 4;

/// The order of one epoch.
#[derive(Debug, Clone, Copy)]
pub struct BatchPlan;

impl BatchPlan {
    /// Indices `0..n` shuffled by `(seed, epoch)` and cut into batches of `batch_size`; the
    /// last, partial batch is dropped. Empty when `batch_size` is 0 or exceeds `n`.
    pub fn epoch(n: usize, batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        if batch_size == 0 {
            return Vec::new();
        }
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut derived_rng(seed, Stream::EpochOrder, epoch, 0));
        order.chunks_exact(batch_size).map(<[usize]>::to_vec).collect()
    }
}

/// One batch: images as `[b, c, h, w]` row-major f32, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The normalized images, unaugmented.
    pub images: Vec<f32>,
    /// Two independently augmented, normalized views of each image, when asked for.
    pub views: Option<(Vec<f32>, Vec<f32>)>,
    /// Labels (`-1` for an unlabelled set).
    pub labels: Vec<i64>,
    /// The images' indices in the set.
    pub indices: Vec<usize>,
}

/// How [`Batches`] prepares its batches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchOptions {
    /// The run's seed.
    pub seed: u64,
    /// The epoch (part of every batch's random key).
    pub epoch: u64,
    /// Make two augmented views per image with this augmentation (`None`: no views).
    pub views: Option<ViewAugmenter>,
    /// Background threads (0: prepare each batch on the consumer's thread when asked).
    pub threads: usize,
}

/// Shared by the inline path and the workers.
struct Maker {
    set: Arc<ImageSet>,
    normalizer: Normalizer,
    options: BatchOptions,
    plan: Arc<Vec<Vec<usize>>>,
}

impl Maker {
    fn make(&self, k: usize) -> Result<Batch> {
        let indices = self.plan[k].clone();
        let labels = match &self.set.labels {
            Some(l) => indices
                .iter()
                .map(|&i| {
                    let missing = || {
                        Error::Data(format!("{}: image {i} has no label ({} labels)", self.set.name, l.len()))
                    };
                    l.get(i).copied().ok_or_else(missing)
                })
                .collect::<Result<Vec<_>>>()?,
            None => vec![-1; indices.len()],
        };
        let (shape, len) = (self.set.shape, self.set.image_len());
        let mut images = vec![0.0; indices.len() * len];
        for (out, &i) in images.chunks_exact_mut(len).zip(&indices) {
            self.normalizer.normalize_into(self.set.image(i), shape, out)?;
        }
        let views = match self.options.views {
            None => None,
            Some(augmenter) => {
                let mut rng = derived_rng(self.options.seed, Stream::Batch, self.options.epoch, k as u64);
                let (mut a, mut b) = (vec![0.0; images.len()], vec![0.0; images.len()]);
                for ((va, vb), &i) in a.chunks_exact_mut(len).zip(b.chunks_exact_mut(len)).zip(&indices) {
                    let image = self.set.image(i);
                    self.normalizer.normalize_into(&augmenter.view(image, shape, &mut rng), shape, va)?;
                    self.normalizer.normalize_into(&augmenter.view(image, shape, &mut rng), shape, vb)?;
                }
                Some((a, b))
            }
        };
        Ok(Batch { images, views, labels, indices })
    }
}

/// An iterator over the batches of a plan, in order; see the module docs.
pub struct Batches {
    maker: Arc<Maker>,
    next: usize,
    /// One channel per worker; batch `k` comes from worker `k % workers.len()`.
    receivers: Vec<Receiver<Result<Batch>>>,
    workers: Vec<JoinHandle<()>>,
    failed: bool,
}

impl Batches {
    /// Batches of `set` for `plan` (index lists, e.g. from [`BatchPlan::epoch`]). Errors when the
    /// normalizer does not fit the images, an index is out of range, or a thread cannot start.
    pub fn new(
        set: Arc<ImageSet>,
        normalizer: Normalizer,
        plan: Vec<Vec<usize>>,
        options: BatchOptions,
    ) -> Result<Batches> {
        normalizer.check(set.shape)?;
        if set.image_len() == 0 {
            return Err(Error::Data(format!("{}: empty images (shape {:?})", set.name, set.shape)));
        }
        let n = set.len();
        for (k, batch) in plan.iter().enumerate() {
            if let Some(bad) = batch.iter().find(|&&i| i >= n) {
                return Err(Error::Data(format!(
                    "{}: batch {k} has index {bad}, the set has {n} images",
                    set.name
                )));
            }
        }
        let maker = Arc::new(Maker { set, normalizer, options, plan: Arc::new(plan) });
        let mut batches =
            Batches { maker, next: 0, receivers: Vec::new(), workers: Vec::new(), failed: false };
        let threads = options.threads.min(batches.maker.plan.len());
        let capacity = (PREFETCH / threads.max(1)).max(1);
        for w in 0..threads {
            let (sender, receiver) = sync_channel(capacity);
            let maker = Arc::clone(&batches.maker);
            let handle = std::thread::Builder::new()
                .name(format!("hamos-loader-{w}"))
                .spawn(move || {
                    for k in (w..maker.plan.len()).step_by(threads) {
                        let batch = maker.make(k);
                        let stop = batch.is_err();
                        // A send fails once the consumer is gone: nothing left to do.
                        if sender.send(batch).is_err() || stop {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::Data(format!("cannot start loader thread {w}: {e}")))?;
            batches.receivers.push(receiver);
            batches.workers.push(handle);
        }
        Ok(batches)
    }

    /// Number of batches in the plan.
    pub fn batch_count(&self) -> usize {
        self.maker.plan.len()
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.failed || self.next >= self.maker.plan.len() {
            return None;
        }
        let k = self.next;
        self.next += 1;
        let batch = if self.receivers.is_empty() {
            self.maker.make(k)
        } else {
            let w = k % self.receivers.len();
            // A worker only hangs up early if it panicked; report that rather than wait.
            self.receivers[w].recv().unwrap_or_else(|_| {
                Err(Error::Data(format!("loader thread {w} stopped before batch {k} (it panicked)")))
            })
        };
        self.failed = batch.is_err();
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = if self.failed { 0 } else { self.maker.plan.len() - self.next };
        (0, Some(left))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        // Hanging up first makes a worker blocked on a full channel return.
        self.receivers.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
