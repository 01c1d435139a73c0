//! # hamos-conformance: one test suite, every backend
//!
//! Every backend of HamOS must pass this suite. It is written once against the shared tensor
//! trait ([`hamos_api::Tensor`] / [`hamos_api::Backend`]) and run against each compiled backend
//! and device, in the spirit of burn's shared backend tests and candle's one-test-body-per-device
//! `test_utils`.
//!
//! Each case ([`cases`]) compares a backend's results on seeded random inputs with a naive `f64`
//! host reference ([`mod@reference`]); gradients are compared with central finite differences of
//! that reference ([`gradcheck`]). Failures come back as [`hamos_api::Error`] naming the op, the
//! element, the value got and the value wanted; panics in invalid-input cases are caught and
//! reported as failures.
//!
//! A backend crate runs the suite from an integration test, e.g. `tests/conformance.rs`:
//!
//! ```no_run
//! hamos_conformance::conformance_suite!(|| std::sync::Arc::new(hamos_candle::CandleBackend::cpu()));
//! ```
//!
//! which expands to one `#[test]` per case (so each shows in `cargo test` on its own), in two
//! modules: `core_ops` (the core tensor trait, [`CORE_CASES`]) and `bank_kernels` (the
//! class-bank kernels of synthesis that a backend may fuse through `hamos_api::BankKernels`,
//! [`BANK_KERNEL_CASES`]). For a
//! device that may be missing (CUDA, libtorch), the `optional` form takes a
//! `fn() -> hamos_api::Result<Arc<dyn Backend>>` and skips the cases when it gives
//! [`Error::BackendUnavailable`]:
//!
//! ```no_run
//! mod cuda {
//!     hamos_conformance::conformance_suite!(optional || hamos_api::open_backend("candle", "cuda:0"));
//! }
//! ```
//!
//! [`cases::cross_backend_mismatch`] takes two backends and is not part of the macro: call it
//! where two backends are compiled in.

pub mod cases;
pub mod gradcheck;
pub mod reference;

#[doc(hidden)]
pub use hamos_api;

pub use cases::cross_backend_mismatch;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use hamos_api::{Backend, Error, Result};

/// A conformance case: passes with `Ok(())`, fails with an error naming the op and the values.
pub type Case = fn(&Arc<dyn Backend>) -> Result<()>;

/// The cases of the core part of [`conformance_suite!`] (the core tensor trait and its network
/// ops) by name, in its order.
pub const CORE_CASES: &[(&str, Case)] = __core_cases!(list());

/// The cases of the bank-kernel part of [`conformance_suite!`] (the class-bank kernels of
/// synthesis, fused or generic) by name, in its order.
pub const BANK_KERNEL_CASES: &[(&str, Case)] = __bank_kernel_cases!(list());

/// Runs every case, core then bank kernels, on `backend` (a panic counts as a failure) and
/// returns each name with its outcome: for runners other than `cargo test`, e.g. checking a
/// device from a CLI.
pub fn run_all(backend: &Arc<dyn Backend>) -> Vec<(&'static str, Result<()>)> {
    CORE_CASES
        .iter()
        .chain(BANK_KERNEL_CASES)
        .map(|&(name, case)| {
            let outcome = catch_unwind(AssertUnwindSafe(|| case(backend)))
                .unwrap_or_else(|_| Err(Error::Data(format!("conformance case `{name}` panicked"))));
            (name, outcome)
        })
        .collect()
}

/// Expands to one `#[test] fn` per conformance case, in the modules `core_ops` and
/// `bank_kernels`, each running [`cases`]`::name` on a fresh
/// backend from `$make`, an expression of type `fn() -> Arc<dyn hamos_api::Backend>` (a
/// non-capturing closure works). `conformance_suite!(optional $open)` instead takes
/// `fn() -> hamos_api::Result<Arc<dyn Backend>>` and skips (passes, with a note on stderr) when
/// the backend is unavailable. Invoke it once per module; wrap it in `mod cpu { ... }` to run
/// several devices from one file.
#[macro_export]
macro_rules! conformance_suite {
    (optional $open:expr) => {
        /// The core tensor trait and its network ops.
        mod core_ops {
            #[allow(unused_imports)]
            use super::*;
            $crate::__core_cases!(optional $open);
        }
        /// The class-bank kernels of synthesis (fused where the backend fuses them).
        mod bank_kernels {
            #[allow(unused_imports)]
            use super::*;
            $crate::__bank_kernel_cases!(optional $open);
        }
    };
    ($make:expr) => {
        /// The core tensor trait and its network ops.
        mod core_ops {
            #[allow(unused_imports)]
            use super::*;
            $crate::__core_cases!(required $make);
        }
        /// The class-bank kernels of synthesis (fused where the backend fuses them).
        mod bank_kernels {
            #[allow(unused_imports)]
            use super::*;
            $crate::__bank_kernel_cases!(required $make);
        }
    };
}

/// The cases of the bank-kernel part: the class-bank kernels of synthesis, which a backend may
/// fuse (`hamos_api::BankKernels`); adding a case is one line here.
#[doc(hidden)]
#[macro_export]
macro_rules! __bank_kernel_cases {
    ($mode:ident $make:expr) => {
        $crate::__conformance_tests! { $mode ($make)
            rows_to_host
            class_gram
            class_logsumexp
            class_kth_nearest
            class_kth_nearest_near_ties
        }
    };
}

/// The cases of the core part (`hamos_api::TensorImpl` and `ModuleOps`): adding a case is one
/// line here.
#[doc(hidden)]
#[macro_export]
macro_rules! __core_cases {
    ($mode:ident $make:expr) => {
        $crate::__conformance_tests! { $mode ($make)
            // creation
            from_f32_roundtrip
            from_i64_roundtrip
            full_zeros_ones
            randn_reproducible
            rand_uniform_in_range
            wrong_data_length_errors
            // shape
            reshape
            transpose
            t
            narrow
            cat
            broadcast_as
            strided_views_compose
            // elementwise
            binary_same_shape
            binary_broadcast
            unary_ops
            affine_and_scalars
            clamp
            // reduce
            reduce_each_dim
            reduce_to_rank0
            argmax
            mean_and_all
            sum_long
            // matmul
            matmul_2d
            matmul_batched
            matmul_strided
            matmul_large
            // select
            topk
            topk_wide_rows
            index_select
            gather
            compare_ops
            where_mask
            kth_smallest
            to_dtype
            // helpers
            l2_normalize
            logsumexp
            softmax
            pairwise_sq_dists
            cosine_similarity
            row_dot_and_norm
            // autograd
            grad_add
            grad_sub
            grad_mul
            grad_div
            grad_maximum_minimum
            grad_exp
            grad_log
            grad_sqrt
            grad_cos_sin
            grad_tanh
            grad_abs_relu
            grad_affine
            grad_clamp
            grad_sum
            grad_max_min
            grad_mean
            grad_matmul
            grad_narrow
            grad_cat
            grad_reshape_transpose
            grad_index_select
            grad_gather
            grad_topk_values
            grad_where_mask
            grad_logsumexp
            grad_l2_normalize
            grad_pairwise_sq_dists
            // training
            grad_unused_variable_is_zero
            grad_no_accumulation
            grad_detach_blocks
            grad_reused_variable
            linear_regression_trains
            // network
            conv2d_forward
            conv2d_gradients
            max_pool2d_forward
            avg_pool2d_forward
            global_avg_pool2d
            pool2d_gradients
            conv_pool_chain_gradients
            network_op_errors
            // errors
            matmul_shape_mismatch_errors
            broadcast_mismatch_errors
            reshape_wrong_count_errors
            narrow_out_of_range_errors
            dim_out_of_range_errors
            topk_k_too_large_errors
            cat_mismatch_errors
            index_out_of_range_errors
            gradients_of_non_scalar_errors
        }
    };
}

/// One `#[test]` per case name.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    (required ($make:expr) $($case:ident)*) => {$(
        #[test]
        fn $case() {
            let make: fn() -> ::std::sync::Arc<dyn $crate::hamos_api::Backend> = $make;
            $crate::__run_case(stringify!($case), &make(), $crate::cases::$case);
        }
    )*};
    (list ($unit:expr) $($case:ident)*) => {
        &[$((stringify!($case), $crate::cases::$case as $crate::Case)),*]
    };
    (optional ($open:expr) $($case:ident)*) => {$(
        #[test]
        fn $case() {
            let open: fn() -> $crate::hamos_api::Result<::std::sync::Arc<dyn $crate::hamos_api::Backend>> = $open;
            if let Some(backend) = $crate::__open_or_skip(stringify!($case), open()) {
                $crate::__run_case(stringify!($case), &backend, $crate::cases::$case);
            }
        }
    )*};
}

/// Runs one case and panics with a readable message when it fails.
#[doc(hidden)]
#[allow(clippy::panic)]
pub fn __run_case(name: &str, backend: &Arc<dyn Backend>, case: Case) {
    if let Err(e) = case(backend) {
        panic!("conformance case `{name}` failed on {} {}:\n{e}", backend.name(), backend.device());
    }
}

/// The backend, or `None` (with a note) when it is unavailable; other errors panic.
#[doc(hidden)]
#[allow(clippy::panic)]
pub fn __open_or_skip(name: &str, opened: Result<Arc<dyn Backend>>) -> Option<Arc<dyn Backend>> {
    match opened {
        Ok(backend) => Some(backend),
        Err(e @ Error::BackendUnavailable { .. }) => {
            eprintln!("skipping conformance case `{name}`: {e}");
            None
        }
        Err(e) => panic!("conformance case `{name}`: opening the backend failed: {e}"),
    }
}
