//! # hamos-tch: the tch (libtorch) backend of HamOS
//!
//! [`TchTensor`] wraps a [`tch::Tensor`] and implements the shared tensor trait
//! [`hamos_api::TensorImpl`]; [`TchBackend`] implements [`hamos_api::Backend`] on one device
//! (`cpu` or `cuda:N`). The backend registers itself under the name `tch`, so
//! `hamos_api::open_backend("tch", "cpu")` finds it in any binary that links this crate.
//!
//! Every op goes through tch's fallible `f_*` methods and checks dims against the rank first,
//! so bad input gives a [`hamos_api::Error`], never a panic. Gradients use libtorch's autograd
//! engine without touching any `.grad()` slot, so taking them twice gives the same result.
//!
//! ```no_run
//! use hamos_api::{Backend, DeviceSpec};
//! use hamos_tch::TchBackend;
//! # fn main() -> hamos_api::Result<()> {
//! hamos_tch::set_threads(2);
//! let backend = TchBackend::new(DeviceSpec::Cpu)?;
//! let x = backend.from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
//! let y = x.matmul(&x)?;
//! assert_eq!(y.to_vec_f32()?, vec![7.0, 10.0, 15.0, 22.0]);
//! # Ok(()) }
//! ```
//!
//! ## Building and linking
//!
//! libtorch comes from `scripts/install-libtorch.sh` (set `LIBTORCH` to the path it prints and
//! `LIBTORCH_BYPASS_VERSION_CHECK=1`). For CUDA devices build with `--features cuda` against the
//! full torch wheel (`HAMOS_TORCH_FULL=1 scripts/install-libtorch.sh`).
//!
//! This crate's build script embeds the libtorch library directory as an rpath, so its own tests,
//! examples and binaries run without `LD_LIBRARY_PATH`. Cargo does not pass link arguments of a
//! library on to the crates that depend on it, so a binary crate that links `hamos-tch` adds the
//! rpath in its own `build.rs`; this crate exports the directory (its manifest has
//! `links = "hamos_tch"`) as `DEP_HAMOS_TCH_LIBTORCH_LIB`, and `DEP_HAMOS_TCH_CUDA=1` when built
//! with the `cuda` feature:
//!
//! ```text
//! // build.rs of a binary crate with `hamos-tch` among its [dependencies]
//! fn main() {
//!     if let Ok(dir) = std::env::var("DEP_HAMOS_TCH_LIBTORCH_LIB") {
//!         println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
//!     }
//!     if std::env::var_os("DEP_HAMOS_TCH_CUDA").is_some() {
//!         // keep libtorch_cuda, which --as-needed would drop
//!         println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
//!         println!("cargo:rustc-link-arg=-ltorch");
//!         println!("cargo:rustc-link-arg=-Wl,--as-needed");
//!     }
//! }
//! ```
//!
//! (`DEP_*` variables reach only direct dependents; an optional dependency must be enabled.)
//! Without the rpath, run with `LD_LIBRARY_PATH=$LIBTORCH/lib`.
//!
//! ## Threads
//!
//! libtorch's OpenMP pool spins while waiting; on a machine with few cores shared with other
//! processes (or with parallel test threads) that can make it many times slower. Call
//! [`set_threads`] early, e.g. `set_threads(1)` in tests.

mod backend;
mod module;
mod tensor;

use std::sync::{Arc, Once};

use hamos_api::{Backend, BackendOptions, DeviceSpec, Result};

pub use backend::TchBackend;
pub use tch;
pub use tensor::TchTensor;

/// Name of this backend in configs and messages.
pub const BACKEND_NAME: &str = "tch";

fn open(spec: DeviceSpec, options: &BackendOptions) -> Result<Arc<dyn Backend>> {
    configure(options);
    Ok(Arc::new(TchBackend::new(spec)?))
}

/// Sets libtorch's threads when `options` name a count (libtorch's own default otherwise).
fn configure(options: &BackendOptions) {
    if options.threads > 0 {
        set_threads(options.threads);
    }
}

inventory::submit! {
    hamos_api::BackendRegistration {
        name: BACKEND_NAME,
        description: "libtorch through tch: CPU, and CUDA when built with the `cuda` feature",
        open,
        configure,
    }
}

/// Sets the number of threads libtorch uses inside one op (`n` is raised to at least 1).
///
/// The first call also sets the inter-op pool to `n` threads when libtorch still allows it
/// (it does only before any inter-op work has started); later calls change only the intra-op
/// count. Threads that already ran libtorch ops keep their OpenMP setting, so call this early.
pub fn set_threads(n: usize) {
    static INTEROP: Once = Once::new();
    let n = i32::try_from(n.max(1)).unwrap_or(i32::MAX);
    INTEROP.call_once(|| {
        // SAFETY: plain FFI calls into libtorch's C wrapper with a positive count.
        // `at_set_num_interop_threads` reports failure (inter-op work already started) through
        // a thread-local error slot that holds a `strdup`ed string or null;
        // `get_and_reset_last_err` takes ownership of it, which is freed here so that the stale
        // error neither leaks nor surfaces as the error of a later, unrelated op.
        unsafe {
            torch_sys::at_set_num_interop_threads(n);
            let err = torch_sys::get_and_reset_last_err();
            if !err.is_null() {
                libc::free(err.cast::<libc::c_void>());
            }
        }
    });
    tch::set_num_threads(n);
}
