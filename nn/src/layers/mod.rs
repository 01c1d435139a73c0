//! Layers: small structs that know their parameter names and shapes. `init` registers the
//! parameters in a [`hamos_api::ParamStore`]; `forward` reads them through a
//! [`hamos_api::Forward`] pass. Activation and pooling are tensor ops (`relu`, `max_pool2d`).

mod batch_norm;
mod conv2d;
mod linear;

pub use batch_norm::{BatchNorm2d, BatchNormConfig};
pub use conv2d::Conv2d;
pub use linear::Linear;
