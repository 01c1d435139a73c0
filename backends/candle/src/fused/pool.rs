//! Fork-join for the fused kernels on candle's barrier pool, whose workers spin for a while
//! before they park. Between two kernels of a synthesis the host does a little serial work;
//! rayon's workers fall asleep in that gap, and waking a sleeping virtual CPU can cost more
//! than the kernel itself (measured: a 0.45 ms k-NN call took 1.1 ms after 3 ms of idling).

use std::sync::{Mutex, OnceLock};

/// `f(i)` for every `i` of `order`, spread over candle's barrier pool (the caller takes part)
/// and started in that order (largest work first keeps the tail short); the results come in
/// the same order.
pub(crate) fn map_ordered<T: Send + Sync, F: Fn(usize) -> T + Sync>(order: &[usize], f: F) -> Vec<T> {
    let slots: Vec<OnceLock<T>> = order.iter().map(|_| OnceLock::new()).collect();
    candle_core::utils::barrier_pool().execute_chunked(order.len(), |range| {
        for position in range {
            let _ = slots[position].set(f(order[position]));
        }
    });
    // `execute_chunked` returns once every position ran.
    slots.into_iter().filter_map(OnceLock::into_inner).collect()
}

/// `f(i, chunk)` for every `chunk_len`-long chunk `i` of `data` (the last may be shorter),
/// spread over candle's barrier pool like [`map_ordered`].
pub(crate) fn for_each_chunk_mut<T: Send, F: Fn(usize, &mut [T]) + Sync>(
    data: &mut [T],
    chunk_len: usize,
    f: F,
) {
    // Uncontended locks hand each task its disjoint chunk.
    let chunks: Vec<Mutex<&mut [T]>> = data.chunks_mut(chunk_len.max(1)).map(Mutex::new).collect();
    candle_core::utils::barrier_pool().execute_chunked(chunks.len(), |range| {
        for i in range {
            if let Ok(mut chunk) = chunks[i].lock() {
                f(i, &mut chunk);
            }
        }
    });
}
