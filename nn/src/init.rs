//! PyTorch's default initialisations, drawn on the host from the caller's RNG so that one seed
//! gives the same network on every backend.

use hamos_api::{Backend, Result, Tensor};
use rand::RngCore;

/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: what PyTorch's `kaiming_uniform_(a = sqrt(5))` gives
/// `Linear` and `Conv2d` weights, and its default for their biases.
pub fn fan_in_uniform(
    backend: &dyn Backend,
    dims: &[usize],
    fan_in: usize,
    rng: &mut dyn RngCore,
) -> Result<Tensor> {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    backend.rand_uniform(dims, -bound, bound, rng)
}
