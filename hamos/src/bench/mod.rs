//! `hamos bench`: benchmarks (never timed tests), apart from the pipeline: the tensor trait's
//! overhead over each backend's own calls (here), synthesis per sampler ([`synth`]), one HamOS
//! training step split into its parts ([`step`]) and training throughput per backbone and
//! backend ([`train`]). They reach into the backends' own types to time the direct calls.

pub mod step;
pub mod synth;
pub mod train;

use std::hint::black_box;
use std::time::Instant;

use hamos_api::{Backend, Result, Tensor};

/// Median wall time of `f` in nanoseconds over `samples` samples of `iters` calls, after one
/// warm-up sample.
pub fn median_ns(samples: usize, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    if samples == 0 || iters == 0 {
        return Err(hamos_api::Error::Config(format!(
            "bench ops: --samples ({samples}) and --iters ({iters}) must be at least 1"
        )));
    }
    let mut times = Vec::with_capacity(samples);
    for sample in 0..=samples {
        let start = Instant::now();
        for _ in 0..iters {
            f()?;
        }
        if sample > 0 {
            times.push(start.elapsed().as_nanos() as f64 / iters as f64);
        }
    }
    Ok(median(times))
}

/// The median of `values` (the upper one of an even count; NaN when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One row of the op-overhead table.
#[derive(Debug, Clone)]
pub struct OverheadRow {
    /// Backend name.
    pub backend: &'static str,
    /// The op measured.
    pub op: &'static str,
    /// Median ns per op through [`Tensor`].
    pub through_trait_ns: f64,
    /// Median ns per op calling the backend library directly.
    pub direct_ns: f64,
}

/// Per-op cost of the tensor abstraction on tiny `[4, 4]` tensors, where overhead dominates:
/// `add` and `exp` through [`Tensor`] against the same op on the raw candle tensor.
pub fn candle_overhead(samples: usize, iters: usize) -> Result<Vec<OverheadRow>> {
    let backend = hamos_candle::CandleBackend::cpu();
    let data: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 + 0.5).collect();
    let a = backend.from_f32(&data, &[4, 4])?;
    let b = backend.from_f32(&data, &[4, 4])?;
    let raw = |t: &Tensor| t.downcast_ref::<hamos_candle::CandleTensor>().map(|c| c.raw().clone());
    let (ra, rb) = (raw(&a), raw(&b));
    let (Some(ra), Some(rb)) = (ra, rb) else {
        return Err(hamos_api::Error::Data("candle tensors expected".into()));
    };
    let err = |e| hamos_api::Error::backend("candle", "bench", e);
    Ok(vec![
        OverheadRow {
            backend: "candle",
            op: "add [4,4]",
            through_trait_ns: median_ns(samples, iters, || black_box(a.add(&b)).map(drop))?,
            direct_ns: median_ns(samples, iters, || black_box(ra.broadcast_add(&rb)).map(drop).map_err(err))?,
        },
        OverheadRow {
            backend: "candle",
            op: "exp [4,4]",
            through_trait_ns: median_ns(samples, iters, || black_box(a.exp()).map(drop))?,
            direct_ns: median_ns(samples, iters, || black_box(ra.exp()).map(drop).map_err(err))?,
        },
    ])
}

/// The same measurement for the tch backend.
#[cfg(feature = "tch")]
pub fn tch_overhead(samples: usize, iters: usize) -> Result<Vec<OverheadRow>> {
    let backend = hamos_api::open_backend_with("tch", "cpu", &hamos_api::BackendOptions { threads: 1 })?;
    let data: Vec<f32> = (0..16).map(|i| i as f32 * 0.1 + 0.5).collect();
    let a = backend.from_f32(&data, &[4, 4])?;
    let b = backend.from_f32(&data, &[4, 4])?;
    let raw = |t: &Tensor| t.downcast_ref::<hamos_tch::TchTensor>().map(|c| c.raw().shallow_clone());
    let (Some(ra), Some(rb)) = (raw(&a), raw(&b)) else {
        return Err(hamos_api::Error::Data("tch tensors expected".into()));
    };
    let err = |e| hamos_api::Error::backend("tch", "bench", e);
    Ok(vec![
        OverheadRow {
            backend: "tch",
            op: "add [4,4]",
            through_trait_ns: median_ns(samples, iters, || black_box(a.add(&b)).map(drop))?,
            direct_ns: median_ns(samples, iters, || black_box(ra.f_add(&rb)).map(drop).map_err(err))?,
        },
        OverheadRow {
            backend: "tch",
            op: "exp [4,4]",
            through_trait_ns: median_ns(samples, iters, || black_box(a.exp()).map(drop))?,
            direct_ns: median_ns(samples, iters, || black_box(ra.f_exp()).map(drop).map_err(err))?,
        },
    ])
}

/// The op-overhead table for every compiled backend, as Markdown.
pub fn overhead_table(samples: usize, iters: usize) -> Result<String> {
    #[allow(unused_mut)]
    let mut rows = candle_overhead(samples, iters)?;
    #[cfg(feature = "tch")]
    rows.extend(tch_overhead(samples, iters)?);
    let mut out = String::from(
        "| backend | op | through Tensor (ns) | direct (ns) | overhead (ns) |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} |\n",
            r.backend,
            r.op,
            r.through_trait_ns,
            r.direct_ns,
            r.through_trait_ns - r.direct_ns
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_samples_or_iterations_are_errors() {
        for (samples, iters) in [(0, 5), (3, 0)] {
            let error = median_ns(samples, iters, || Ok(())).err().map(|e| e.to_string());
            assert!(error.as_deref().is_some_and(|e| e.contains("--samples")), "{error:?}");
        }
        assert!(median_ns(3, 2, || Ok(())).is_ok_and(|ns| ns >= 0.0));
    }
}
