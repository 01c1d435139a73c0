//! Forward + backward timings of the fused CPU convolution and pooling kernels against candle's
//! own ops, median (and minimum) milliseconds over repeated runs:
//!
//! The backward starts at the op's output, seeded with ones by candle, rather than at a scalar
//! loss: reducing to a loss makes candle build the output's gradient through a broadcast add,
//! which on a `[128, 32, 28, 28]` output costs more than the fused backward itself and would
//! hide the kernels' difference.
//!
//! ```sh
//! cargo run --release -p hamos-candle --example conv_speed [-- ITERATIONS]
//! ```

use std::time::Instant;

use hamos_api::{Backend, Result, Tensor, Window};
use hamos_candle::{CandleBackend, CandleTensor};

/// Median and minimum milliseconds of `iterations` runs of `fused` and of `native`, after one
/// warm-up run of each; the two alternate so that a busy machine slows both alike.
fn time_pair(
    iterations: usize,
    mut fused: impl FnMut() -> Result<()>,
    mut native: impl FnMut() -> Result<()>,
) -> Result<[(f64, f64); 2]> {
    fused()?;
    native()?;
    let mut times = [Vec::with_capacity(iterations), Vec::with_capacity(iterations)];
    for _ in 0..iterations {
        for (which, f) in [&mut fused as &mut dyn FnMut() -> Result<()>, &mut native].into_iter().enumerate()
        {
            let start = Instant::now();
            f()?;
            times[which].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        (t.get(t.len() / 2).copied().unwrap_or(f64::NAN), t.first().copied().unwrap_or(f64::NAN))
    }))
}

fn report(what: &str, [(fused, fused_min), (native, native_min)]: [(f64, f64); 2]) {
    println!("{what:<44} fused {fused:8.2} ms (min {fused_min:8.2})   candle {native:8.2} ms (min {native_min:8.2})");
}

/// Forward has run; runs candle's backward from `out` (seeded with ones).
fn backward(out: &Tensor) -> Result<()> {
    let grads = candle(out)?.raw().backward();
    grads.map(drop).map_err(|e| hamos_api::Error::backend("candle", "backward", e))
}

fn candle(t: &Tensor) -> Result<&CandleTensor> {
    t.downcast_ref::<CandleTensor>()
        .ok_or_else(|| hamos_api::Error::shape("conv_speed", "not a candle tensor"))
}

/// Deterministic values in `[-1, 1)` (a linear congruential sequence), enough for timing.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn conv(backend: &CandleBackend, iterations: usize, x_dims: [usize; 4], out_channels: usize) -> Result<()> {
    let w_dims = [out_channels, x_dims[1], 3, 3];
    let x = backend.variable(&backend.from_f32(&values(x_dims.iter().product(), 1), &x_dims)?)?;
    let w = backend.variable(&backend.from_f32(&values(w_dims.iter().product(), 2), &w_dims)?)?;
    let b = backend.variable(&backend.from_f32(&values(out_channels, 3), &[out_channels])?)?;
    let window = Window::new(3, 1).padded(1);
    let step = |native: bool| -> Result<()> {
        let out = if native {
            candle(&x)?.native_conv2d(&w, Some(&b), window)?
        } else {
            x.conv2d(&w, Some(&b), 1, 1)?
        };
        backward(&out)
    };
    report(
        &format!("conv3x3 {x_dims:?} -> {out_channels}, pad 1"),
        time_pair(iterations, || step(false), || step(true))?,
    );
    Ok(())
}

fn max_pool(backend: &CandleBackend, iterations: usize, x_dims: [usize; 4]) -> Result<()> {
    let x = backend.variable(&backend.from_f32(&values(x_dims.iter().product(), 4), &x_dims)?)?;
    let window = Window::new(2, 2);
    let step = |native: bool| -> Result<()> {
        let out =
            if native { candle(&x)?.native_max_pool2d(window)? } else { x.inner().max_pool2d(window)? };
        backward(&out)
    };
    report(&format!("max_pool2d(2, 2) {x_dims:?}"), time_pair(iterations, || step(false), || step(true))?);
    Ok(())
}

fn main() -> Result<()> {
    let iterations = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(11);
    let backend = CandleBackend::cpu();
    println!("forward + backward, median and minimum of {iterations} alternating runs");
    conv(&backend, iterations, [128, 32, 14, 14], 64)?;
    conv(&backend, iterations, [128, 1, 28, 28], 32)?;
    max_pool(&backend, iterations, [128, 32, 28, 28])?;
    Ok(())
}
