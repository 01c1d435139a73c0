//! Forward + backward timings of the fused CPU training batch norm against the composition of
//! core ops it replaces, median (and minimum) milliseconds over repeated runs. As in
//! `conv_speed`, the backward starts at the output (seeded with ones by candle) so that a loss
//! reduction does not blur the difference.
//!
//! ```sh
//! cargo run --release -p hamos-candle --example bn_speed [-- ITERATIONS]
//! ```

use std::time::Instant;

use hamos_api::{Backend, Error, Result, Tensor};
use hamos_candle::{CandleBackend, CandleTensor};

const EPS: f64 = 1e-5;

/// The composition of core ops that `Tensor::batch_norm_train` runs without a fused kernel.
fn composed(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let d = x.dims().to_vec();
    let count = (d[0] * d[2] * d[3]) as f64;
    let channel_sum = |t: &Tensor| -> Result<Tensor> { t.sum(0, true)?.sum(2, true)?.sum(3, true) };
    let per_channel = [1, d[1], 1, 1];
    let mean = channel_sum(x)?.scale(1.0 / count)?;
    let centered = x.sub(&mean)?;
    let variance = channel_sum(&centered.sqr()?)?.scale(1.0 / count)?;
    let normalized = centered.div(&variance.add_scalar(EPS)?.sqrt()?)?;
    normalized.mul(&weight.reshape(&per_channel)?)?.add(&bias.reshape(&per_channel)?)
}

/// Runs candle's backward from `out` (seeded with ones).
fn backward(out: &Tensor) -> Result<()> {
    let raw =
        out.downcast_ref::<CandleTensor>().ok_or_else(|| Error::shape("bn_speed", "not a candle tensor"))?;
    raw.raw().backward().map(drop).map_err(|e| Error::backend("candle", "backward", e))
}

/// Median and minimum of `times` (milliseconds).
fn stats(mut times: Vec<f64>) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times.get(times.len() / 2).copied().unwrap_or(f64::NAN), times.first().copied().unwrap_or(f64::NAN))
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

fn main() -> Result<()> {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let backend = CandleBackend::cpu();
    let dims = [128, 32, 28, 28];
    let x = backend.variable(&backend.from_f32(&values(dims.iter().product(), 1), &dims)?)?;
    let w = backend.variable(&backend.from_f32(&values(32, 2), &[32])?)?;
    let b = backend.variable(&backend.from_f32(&values(32, 3), &[32])?)?;
    let step = |fused: bool| -> Result<f64> {
        let start = Instant::now();
        let out = if fused { x.batch_norm_train(&w, &b, EPS)?.output } else { composed(&x, &w, &b)? };
        backward(&out)?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    step(true)?;
    step(false)?;
    // Alternating, so that a busy machine slows both alike.
    let (mut fused, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        fused.push(step(true)?);
        plain.push(step(false)?);
    }
    let ((f, f_min), (p, p_min)) = (stats(fused), stats(plain));
    println!("batch_norm_train {dims:?} forward + backward, median of {iterations}");
    println!("fused     {f:8.2} ms (min {f_min:8.2})");
    println!("composed  {p:8.2} ms (min {p_min:8.2})   speed-up {:.1}x", p / f);
    Ok(())
}
