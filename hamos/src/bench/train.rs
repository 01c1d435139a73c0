//! `hamos bench train`: one supervised training step (forward, cross-entropy, backward, SGD)
//! per backbone and backend, in images per second (median of several steps after warm-up),
//! and on tch the same `small_cnn` step written directly against tch, which prices the shared
//! tensor trait.

use std::sync::Arc;
use std::time::Instant;

use hamos_api::{rng_from_seed, Backbone, Backend, Error, Result};
use hamos_nn::optim::{Sgd, SgdConfig};
use hamos_nn::{cross_entropy_step, Classifier};
#[cfg(feature = "tch")]
use hamos_tch::tch;

/// One cell of the benchmark.
#[derive(Debug, Clone)]
pub struct TrainTiming {
    /// Backbone plugin name.
    pub backbone: String,
    /// Backend name.
    pub backend: String,
    /// What ran: `trait` (through the tensor trait) or `direct` (tch calls written by hand).
    pub path: &'static str,
    /// Images per step.
    pub batch: usize,
    /// Median milliseconds per step.
    pub median_ms: f64,
    /// Mean CPU milliseconds per step over all the process's threads (Linux; `None`
    /// elsewhere): the work done, less sensitive than the wall time to other processes on a
    /// busy machine, but counting the time worker threads spin while they wait.
    pub cpu_ms: Option<f64>,
}

impl TrainTiming {
    /// Images per second at the median step time.
    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 / (self.median_ms / 1e3)
    }
}

/// CPU time of this process so far (user + system, all threads), in milliseconds, from
/// `/proc/self/stat` (clock ticks of 10 ms); `None` where that file is missing.
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) closed by the last `)`:
    // state is field 3, utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    Some((ticks(14)? + ticks(15)?) * 10.0)
}

/// Median wall milliseconds of `steps` timed calls of `step` after `warmup` untimed ones, and
/// the mean CPU milliseconds of the timed calls (see [`TrainTiming::cpu_ms`]).
pub fn median_step_ms(
    warmup: usize,
    steps: usize,
    mut step: impl FnMut() -> Result<()>,
) -> Result<(f64, Option<f64>)> {
    if steps == 0 {
        return Err(Error::Config("bench train: --steps must be at least 1".into()));
    }
    for _ in 0..warmup {
        step()?;
    }
    let cpu_start = process_cpu_ms();
    let times: Vec<f64> = (0..steps)
        .map(|_| {
            let start = Instant::now();
            step().map(|()| start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_>>()?;
    let cpu_ms = cpu_start.zip(process_cpu_ms()).map(|(start, end)| (end - start) / steps as f64);
    Ok((super::median(times), cpu_ms))
}

/// Times the training step of `backbone` (10 classes) on `backend` at batch size `batch`.
pub fn time_backbone(
    backend: &Arc<dyn Backend>,
    name: &str,
    backbone: Arc<dyn Backbone>,
    batch: usize,
    warmup: usize,
    steps: usize,
) -> Result<TrainTiming> {
    if batch < 2 {
        return Err(Error::Config("bench train: --batch must be at least 2 (batch norm)".into()));
    }
    let mut rng = rng_from_seed(0);
    let [c, h, w] = backbone.input_shape();
    let net = Classifier::new(backbone, 10, "")?;
    let mut params = net.init_store(backend.clone(), &mut rng)?;
    let images = backend.randn(&[batch, c, h, w], 0.0, 1.0, &mut rng)?;
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    let labels = backend.from_i64(&labels, &[batch])?;
    let mut sgd = Sgd::new(SgdConfig::default())?;
    let (median_ms, cpu_ms) = median_step_ms(warmup, steps, || {
        cross_entropy_step(&net, &mut params, &mut sgd, &images, &labels, 0.01).map(drop)
    })?;
    Ok(TrainTiming {
        backbone: name.to_string(),
        backend: backend.name().to_string(),
        path: "trait",
        batch,
        median_ms,
        cpu_ms,
    })
}

/// The table printed by `hamos bench train`.
pub fn table(timings: &[TrainTiming]) -> String {
    let mut out = String::from(
        "| backbone | backend | path | batch | ms / step | images / s | CPU ms / step |\n|---|---|---|---:|---:|---:|---:|\n",
    );
    for t in timings {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.0} | {} |\n",
            t.backbone,
            t.backend,
            t.path,
            t.batch,
            t.median_ms,
            t.images_per_second(),
            t.cpu_ms.map_or_else(|| "-".to_string(), |ms| format!("{ms:.0}"))
        ));
    }
    out
}

/// Images `[n, c, h, w]` of a backend as raw tch tensors, for the direct path.
#[cfg(feature = "tch")]
fn raw_tch(t: &hamos_api::Tensor) -> Result<tch::Tensor> {
    t.downcast_ref::<hamos_tch::TchTensor>()
        .map(|raw| raw.raw().shallow_clone())
        .ok_or_else(|| Error::Data("bench train: tch tensors expected".into()))
}

/// The `small_cnn` step written directly against tch (`tch::nn` layers and optimizer, PyTorch's
/// SGD), at batch `batch`: the reference for the trait's overhead.
#[cfg(feature = "tch")]
pub fn time_small_cnn_direct(batch: usize, warmup: usize, steps: usize) -> Result<TrainTiming> {
    use tch::nn::{self, Module, ModuleT, OptimizerConfig};
    let err = |e: tch::TchError| Error::backend("tch", "bench train direct", e);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let conv = |p: nn::Path, i, o| {
        nn::conv2d(p, i, o, 3, nn::ConvConfig { padding: 1, bias: false, ..Default::default() })
    };
    let (c1, c2, c3) =
        (conv(&root / "conv1", 1, 32), conv(&root / "conv2", 32, 64), conv(&root / "conv3", 64, 128));
    let bn = |p: nn::Path, c| nn::batch_norm2d(p, c, Default::default());
    let (b1, b2, b3) = (bn(&root / "bn1", 32), bn(&root / "bn2", 64), bn(&root / "bn3", 128));
    let fc = nn::linear(&root / "fc", 128, 10, Default::default());
    let mut opt =
        nn::Sgd { momentum: 0.9, dampening: 0.0, wd: 1e-4, nesterov: false }.build(&vs, 0.01).map_err(err)?;
    let backend = hamos_tch::TchBackend::new(hamos_api::DeviceSpec::Cpu)?;
    let images = raw_tch(&backend.randn(&[batch, 1, 28, 28], 0.0, 1.0, &mut rng_from_seed(0))?)?;
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 10).collect();
    let labels = tch::Tensor::from_slice(&labels);
    let (median_ms, cpu_ms) = median_step_ms(warmup, steps, || {
        let x = b1.forward_t(&c1.forward(&images), true).relu().max_pool2d_default(2);
        let x = b2.forward_t(&c2.forward(&x), true).relu().max_pool2d_default(2);
        let x = b3.forward_t(&c3.forward(&x), true).relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        let loss = fc.forward(&x).cross_entropy_for_logits(&labels);
        opt.backward_step(&loss);
        loss.f_double_value(&[]).map(drop).map_err(err)
    })?;
    Ok(TrainTiming {
        backbone: "small_cnn".into(),
        backend: "tch".into(),
        path: "direct",
        batch,
        median_ms,
        cpu_ms,
    })
}
