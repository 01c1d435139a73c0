//! # hamos-api: the contracts of HamOS
//!
//! Everything pluggable in HamOS meets here:
//! - [`Tensor`] and [`TensorImpl`]: the shared tensor trait that every backend implements and
//!   every plugin is written against, with autograd on every backend;
//! - [`ParamStore`] and [`Forward`]: named network parameters and the context of a forward pass;
//! - [`Backend`]: tensor factories, opened by name with [`open_backend`];
//! - the plugin traits [`Backbone`], [`Sampler`], [`OodnessEnergy`], [`IdBarrier`], [`ContrastiveLoss`],
//!   [`Scorer`], registered by name ([`register_plugin!`]) and chosen from config;
//! - [`config`]: the range checks a plugin's `validate()` uses ([`config::positive`],
//!   [`config::finite_in`]); the run config itself lives in the `hamos` crate;
//! - [`Error`]: one error enum.
//!
//! ```
//! use hamos_api::{ClassBank, Tensor};
//! # fn demo(backend: std::sync::Arc<dyn hamos_api::Backend>) -> hamos_api::Result<()> {
//! let z = backend.from_f32(&[3.0, 4.0, 0.0, 2.0], &[2, 2])?.l2_normalize(1)?;
//! assert_eq!(z.to_vec_f32()?, vec![0.6, 0.8, 0.0, 1.0]);
//! # Ok(()) }
//! ```

pub mod backend;
pub mod config;
pub mod error;
pub mod params;
pub mod plugin;
pub mod registry;
pub mod tensor;

pub use backend::{
    configure_backends, open_backend, open_backend_with, rng_from_seed, Backend, BackendOptions,
    BackendRegistration, DeviceSpec, HamosRng,
};
pub use error::{Error, Result};
pub use params::{join_name, Forward, Mode, Param, ParamKind, ParamStore};
pub use plugin::*;
pub use registry::{PluginKind, PluginRegistration};
pub use tensor::{
    broadcast_shape, resolve_kth_tie, select_kth, BankKernels, BatchNormOutput, BinaryOp, CmpOp, DType,
    GenericBankKernels, KthSelection, ModuleOps, ReduceOp, Tensor, TensorImpl, UnaryOp, Window,
};

#[doc(hidden)]
pub use inventory;
