//! Batches for the trainer: the data loader's batches as network inputs, one view (pretraining)
//! or both views stacked (fine-tuning: view 2 of row `i` is row `i + b`, labels repeated).

use std::sync::Arc;

use hamos_api::{Error, Result};

use super::Prepared;
use crate::config::RunConfig;
use crate::data::{BatchOptions, BatchPlan, Batches, ViewAugmenter};

/// What to draw batches from.
pub struct Feed<'a> {
    /// The run (batch size, augmentation, loader threads).
    pub config: &'a RunConfig,
    /// The prepared ID data.
    pub data: &'a Prepared,
    /// Both views stacked (fine-tuning) or one view (pretraining).
    pub two_views: bool,
    /// Augment the images (one view: the first augmented view; two views: two independent
    /// ones). Without it the images go as they are, twice when `two_views`.
    pub augment: bool,
    /// Seed of the order and augmentation (with the epoch and the batch index).
    pub seed: u64,
}

/// One batch as the network takes it.
#[derive(Debug, Clone)]
pub struct FeedBatch {
    /// `[n, c, h, w]` row-major, normalized.
    pub images: Vec<f32>,
    /// `[n]` labels.
    pub labels: Vec<i64>,
    /// `[c, h, w]`.
    pub shape: [usize; 3],
}

impl FeedBatch {
    /// `[n, c, h, w]`.
    pub fn dims(&self) -> [usize; 4] {
        [self.labels.len(), self.shape[0], self.shape[1], self.shape[2]]
    }
}

/// The batches of epoch `epoch` (from 0), in order; the last partial batch is dropped.
pub fn epoch_batches(feed: &Feed, epoch: usize) -> Result<impl Iterator<Item = Result<FeedBatch>>> {
    let set = &feed.data.train;
    let plan = BatchPlan::epoch(set.len(), feed.config.train.batch_size, feed.seed, epoch as u64);
    if plan.is_empty() {
        return Err(Error::Data(format!(
            "{}: {} images make no batch of {}",
            set.name,
            set.len(),
            feed.config.train.batch_size
        )));
    }
    let options = BatchOptions {
        seed: feed.seed,
        epoch: epoch as u64,
        views: feed.augment.then(|| ViewAugmenter::from_config(&feed.config.data.augment)),
        threads: feed.config.data.loader_threads,
    };
    let batches = Batches::new(Arc::clone(set), feed.data.normalizer.clone(), plan, options)?;
    let (shape, two_views) = (set.shape, feed.two_views);
    Ok(batches.map(move |batch| {
        let batch = batch?;
        let (a, b) = match batch.views {
            Some(views) => views,
            None if two_views => (batch.images.clone(), batch.images),
            None => return Ok(FeedBatch { images: batch.images, labels: batch.labels, shape }),
        };
        Ok(if two_views {
            let mut images = a;
            images.extend(b);
            let mut labels = batch.labels.clone();
            labels.extend(&batch.labels);
            FeedBatch { images, labels, shape }
        } else {
            FeedBatch { images: a, labels: batch.labels, shape }
        })
    }))
}
