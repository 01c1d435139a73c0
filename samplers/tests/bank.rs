//! `ClassBank::from_rows` gives the same buffer whether the rows already have its layout (the
//! fast path: grouped by class, `capacity` each) or must be bucketed.
#![allow(clippy::unwrap_used)] // a failure there is a test failure

mod common;

use std::sync::Arc;

use common::for_each_backend;
use hamos_api::{Backend, ClassBank};

#[test]
fn rows_in_the_buffer_layout_and_bucketed_rows_give_the_same_bank() {
    for_each_backend(rows_in_the_buffer_layout_and_bucketed_rows_give_the_same_bank_on);
}

fn rows_in_the_buffer_layout_and_bucketed_rows_give_the_same_bank_on(backend: Arc<dyn Backend>) {
    let (classes, capacity, dim) = (3, 4, 5);
    let mut rng = hamos_api::rng_from_seed(121);
    let rows = hamos_api::backend::randn_host(classes * capacity * dim, 0.0, 1.0, &mut rng);
    let labels: Vec<usize> = (0..classes * capacity).map(|i| i / capacity).collect();
    let direct = ClassBank::from_rows(&backend, &rows, dim, &labels, classes, capacity).unwrap();
    // The same rows interleaved by class, after an older row of class 1 that the buffer drops.
    let mut order: Vec<usize> =
        (0..capacity).flat_map(|slot| (0..classes).map(move |c| c * capacity + slot)).collect();
    order.insert(0, capacity);
    let mut shuffled: Vec<f32> = order.iter().flat_map(|&r| rows[r * dim..(r + 1) * dim].to_vec()).collect();
    shuffled[..dim].iter_mut().for_each(|x| *x += 10.0);
    let shuffled_labels: Vec<usize> = order.iter().map(|&r| labels[r]).collect();
    let bucketed =
        ClassBank::from_rows(&backend, &shuffled, dim, &shuffled_labels, classes, capacity).unwrap();
    assert_eq!(direct.counts(), bucketed.counts());
    assert_eq!(direct.embeddings().dims(), vec![classes, capacity, dim]);
    assert_eq!(direct.embeddings().to_vec_f32().unwrap(), bucketed.embeddings().to_vec_f32().unwrap());
    assert_eq!(direct.embeddings().to_vec_f32().unwrap(), rows);
}
