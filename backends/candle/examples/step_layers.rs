//! Where a `small_cnn` training step's time goes on the candle CPU backend: the forward of each
//! layer (median milliseconds), then the backward of the whole step, over repeated runs.
//!
//! ```sh
//! cargo run --release -p hamos-candle --example step_layers [-- ITERATIONS]
//! ```

use std::time::Instant;

use hamos_api::{Backend, Result, Tensor};
use hamos_candle::CandleBackend;

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

fn variable(backend: &CandleBackend, dims: &[usize], seed: u64, scale: f32) -> Result<Tensor> {
    let v: Vec<f32> = values(dims.iter().product(), seed).into_iter().map(|v| v * scale).collect();
    backend.variable(&backend.from_f32(&v, dims)?)
}

fn main() -> Result<()> {
    let iterations = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(9);
    let threads = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    hamos_candle::set_threads(threads);
    let backend = CandleBackend::cpu();
    let x = backend.from_f32(&values(128 * 784, 1), &[128, 1, 28, 28])?;
    let channels = [1, 32, 64, 128];
    let mut params = Vec::new();
    for i in 0..3 {
        let w = variable(&backend, &[channels[i + 1], channels[i], 3, 3], 10 + i as u64, 0.3)?;
        params.push((
            w,
            backend.variable(&backend.ones(&[channels[i + 1]])?)?,
            backend.variable(&backend.zeros(&[channels[i + 1]])?)?,
        ));
    }
    let fc = variable(&backend, &[128, 10], 20, 0.1)?;
    let labels = backend.from_i64(&(0..128).map(|i| i % 10).collect::<Vec<i64>>(), &[128, 1])?;
    let mut times: Vec<Vec<f64>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for it in 0..iterations + 1 {
        let mut row = Vec::new();
        let mut tick = |name: &str, start: Instant| {
            if it == 0 {
                names.push(name.to_string());
            }
            row.push(start.elapsed().as_secs_f64() * 1e3);
        };
        let mut h = x.clone();
        for (i, (w, g, b)) in params.iter().enumerate() {
            let t = Instant::now();
            h = h.conv2d(w, None, 1, 1)?;
            tick(&format!("conv{}", i + 1), t);
            let t = Instant::now();
            h = h.batch_norm_train(g, b, 1e-5)?.output;
            tick(&format!("bn{}", i + 1), t);
            let t = Instant::now();
            h = h.relu()?;
            tick(&format!("relu{}", i + 1), t);
            if i < 2 {
                let t = Instant::now();
                h = h.max_pool2d(2, 2)?;
                tick(&format!("pool{}", i + 1), t);
            }
        }
        let t = Instant::now();
        let logits = h.global_avg_pool2d()?.matmul(&fc)?;
        let loss = logits.log_softmax(1)?.gather(1, &labels)?.mean_all()?.neg()?;
        tick("head+loss", t);
        let t = Instant::now();
        let wrt: Vec<&Tensor> = params.iter().flat_map(|(w, g, b)| [w, g, b]).chain([&fc]).collect();
        let grads = loss.gradients(&wrt)?;
        tick("backward", t);
        drop(grads);
        if it > 0 {
            times.push(row);
        }
    }
    let mut total = 0.0;
    for (j, name) in names.iter().enumerate() {
        let mut col: Vec<f64> = times.iter().map(|r| r[j]).collect();
        col.sort_by(f64::total_cmp);
        let median = col[col.len() / 2];
        total += median;
        println!("{name:<10} {median:8.2} ms");
    }
    println!("{:<10} {total:8.2} ms (sum of medians)", "total");
    Ok(())
}
