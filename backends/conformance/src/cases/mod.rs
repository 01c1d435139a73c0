//! The cases of the suite: each is `pub fn(&Arc<dyn Backend>) -> Result<()>`, run once per
//! backend by [`crate::conformance_suite!`]. All are re-exported here, so `cases::name` works
//! whatever module (topic) a case lives in.

mod autograd;
mod autograd_select;
mod bank_kernels;
mod creation;
mod elementwise;
mod errors;
mod helpers;
mod matmul;
mod network;
mod reduce;
mod select;
mod shape;
mod training;

pub use autograd::*;
pub use autograd_select::*;
pub use bank_kernels::*;
pub use creation::*;
pub use elementwise::*;
pub use errors::*;
pub use helpers::*;
pub use matmul::*;
pub use network::*;
pub use reduce::*;
pub use select::*;
pub use shape::*;
pub use training::*;
