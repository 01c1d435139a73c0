//! # hamos-candle: the candle backend of HamOS
//!
//! Pure Rust, CPU by default, CUDA with the `cuda` feature. Implements the shared tensor trait
//! of [`hamos_api`] and registers itself as backend `candle`.
//!
//! ```
//! use hamos_api::Backend;
//! let backend = hamos_candle::CandleBackend::cpu();
//! let x = backend.from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! assert_eq!(x.sum(1, false)?.to_vec_f32()?, vec![3.0, 7.0]);
//! # Ok::<(), hamos_api::Error>(())
//! ```

mod backend;
mod fused;
mod module;
mod tensor;

pub use backend::CandleBackend;
pub use tensor::CandleTensor;

/// Keeps large freed blocks in glibc's heap instead of returning them to the kernel, once per
/// process (called when a CPU backend is made).
///
/// A training step allocates and frees tensors of many megabytes (a `[128, 32, 28, 28]`
/// activation is 12.8 MB) dozens of times. By default glibc serves such blocks with a fresh
/// `mmap` and unmaps them on free, so every one is zero-filled page by page on first touch: the
/// page faults took about a fifth of a `small_cnn` step's CPU time. Raising the mmap threshold
/// to its maximum (32 MiB) and the trim threshold keeps the blocks for reuse; the cost is that
/// the process keeps its peak heap. Other allocators, and other platforms, are left alone.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static TUNE: std::sync::Once = std::sync::Once::new();
        TUNE.call_once(|| {
            // SAFETY: `mallopt` only changes glibc's allocation thresholds; it is called once,
            // with valid parameter numbers and values, and returns 0 on refusal (ignored: the
            // defaults stay).
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}

/// Sets the CPU threads candle uses (`0`: what the machine offers, unless `RAYON_NUM_THREADS`
/// is set already). Call it early, before any thread exists.
///
/// candle asks for its thread count on every matrix product and, unless `RAYON_NUM_THREADS` is
/// set, reads `/proc` and sysfs to find it (a few percent of a synthesis run), so the count is
/// written there once. The calling thread joins rayon's global pool as one of its threads: a
/// parallel loop started from it then runs there and on the other workers, instead of waking
/// every worker and sleeping until they finish (with two cores, three threads took turns).
/// The pool's size is fixed by the first call in a process.
pub fn set_threads(threads: usize) {
    let threads = if threads > 0 {
        threads
    } else {
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|value| value.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
    };
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    // Fails only if a global pool exists already; rayon then keeps its own.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).use_current_thread().build_global();
}

inventory::submit! {
    hamos_api::BackendRegistration {
        name: "candle",
        description: "candle 0.11, pure Rust; cpu, or cuda:N with the `cuda` feature",
        open: backend::open,
        configure: |options| set_threads(options.threads),
    }
}
