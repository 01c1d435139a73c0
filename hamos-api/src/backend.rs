//! Backends: tensor factories, their registry, devices and host-side randomness.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rand::RngCore;
use rand_distr::{Distribution, StandardNormal, Uniform};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A compute device named in a config: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The host CPU.
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" | "gpu" => Ok(DeviceSpec::Cuda(0)),
            other => {
                other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceSpec::Cuda).ok_or_else(
                    || {
                        Error::invalid(
                            "device",
                            format!("`{other}` is not a device; use `cpu`, `cuda` or `cuda:N`"),
                        )
                    },
                )
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A backend on one device: makes tensors. Required: the five factories; provided: the rest.
///
/// Random tensors are drawn on the host from the caller's RNG and then copied, so one seed gives
/// the same numbers on every backend and device.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Backend name, e.g. `candle`.
    fn name(&self) -> &'static str;
    /// The device this backend allocates on.
    fn device(&self) -> DeviceSpec;
    /// An `F32` tensor from row-major data.
    // A factory on a device, not a conversion of `self`.
    #[allow(clippy::wrong_self_convention)]
    fn from_f32(&self, data: &[f32], dims: &[usize]) -> Result<Tensor>;
    /// An `I64` tensor from row-major data.
    #[allow(clippy::wrong_self_convention)]
    fn from_i64(&self, data: &[i64], dims: &[usize]) -> Result<Tensor>;
    /// An `F32` tensor filled with `value`.
    fn full(&self, value: f32, dims: &[usize]) -> Result<Tensor>;
    /// Concatenation along `dim`.
    fn cat(&self, tensors: &[&Tensor], dim: usize) -> Result<Tensor>;
    /// A trainable leaf initialised from `init`: gradients can be taken with respect to it.
    fn variable(&self, init: &Tensor) -> Result<Tensor>;

    /// The class-bank kernels of synthesis on this backend: the generic ones unless the
    /// backend fuses them ([`BankKernels`](crate::tensor::BankKernels), an extension of the
    /// core tensor trait).
    fn bank_kernels(&self) -> &dyn crate::tensor::BankKernels {
        &crate::tensor::GenericBankKernels
    }

    /// `F32` zeros.
    fn zeros(&self, dims: &[usize]) -> Result<Tensor> {
        self.full(0.0, dims)
    }

    /// `F32` ones.
    fn ones(&self, dims: &[usize]) -> Result<Tensor> {
        self.full(1.0, dims)
    }

    /// Standard normal samples scaled to `mean + std * N(0, 1)`, drawn on the host from `rng`.
    fn randn(&self, dims: &[usize], mean: f32, std: f32, rng: &mut dyn RngCore) -> Result<Tensor> {
        let data = randn_host(dims.iter().product(), mean, std, rng);
        self.from_f32(&data, dims)
    }

    /// Uniform samples in `[low, high)`, drawn on the host from `rng`.
    fn rand_uniform(&self, dims: &[usize], low: f32, high: f32, rng: &mut dyn RngCore) -> Result<Tensor> {
        let uniform = Uniform::new(low, high)
            .map_err(|e| Error::shape("rand_uniform", format!("bounds [{low}, {high}): {e}")))?;
        let mut local = seeded_from(rng);
        let data: Vec<f32> = (0..dims.iter().product()).map(|_| uniform.sample(&mut local)).collect();
        self.from_f32(&data, dims)
    }
}

/// `n` samples of `mean + std * N(0, 1)` from `rng`.
pub fn randn_host(n: usize, mean: f32, std: f32, rng: &mut dyn RngCore) -> Vec<f32> {
    let mut local = seeded_from(rng);
    (0..n)
        .map(|_| {
            let z: f32 = StandardNormal.sample(&mut local);
            mean + std * z
        })
        .collect()
}

/// A concrete generator seeded by one draw of `rng`, for sampling many numbers: sampling
/// through `dyn RngCore` makes a virtual call per number (about 20 ns each, 0.5 ms of a
/// mini-batch's momentum draws).
fn seeded_from(rng: &mut dyn RngCore) -> HamosRng {
    use rand::SeedableRng;
    HamosRng::seed_from_u64(rng.next_u64())
}

/// The reproducible RNG every HamOS run threads from its one seed.
pub type HamosRng = rand_chacha::ChaCha8Rng;

/// The RNG for `seed`.
pub fn rng_from_seed(seed: u64) -> HamosRng {
    use rand::SeedableRng;
    HamosRng::seed_from_u64(seed)
}

/// A compiled-in backend, registered with [`inventory::submit!`] by its crate.
pub struct BackendRegistration {
    /// Name used in configs (`backend = "candle"`).
    pub name: &'static str,
    /// One line for `hamos plugins`.
    pub description: &'static str,
    /// Opens the backend on a device with its options, or says why it cannot.
    pub open: fn(DeviceSpec, &BackendOptions) -> Result<Arc<dyn Backend>>,
    /// Applies the process-wide part of the options (thread pools) before any thread exists;
    /// a program calls it through [`configure_backends`] at its start.
    pub configure: fn(&BackendOptions),
}

/// Settings a backend applies when it is opened; each backend maps them onto its library.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendOptions {
    /// CPU threads inside one op; `0` keeps the backend's default.
    pub threads: usize,
}

inventory::collect!(BackendRegistration);

/// Names of the backends compiled into this binary, sorted.
pub fn backend_names() -> Vec<&'static str> {
    let mut names: Vec<_> = inventory::iter::<BackendRegistration>.into_iter().map(|r| r.name).collect();
    names.sort_unstable();
    names
}

/// Applies `options` to every compiled backend's process-wide settings (its thread pools).
/// Call it first thing in `main`, before any thread exists; a backend opened later with a
/// nonzero `threads` refines its count.
pub fn configure_backends(options: &BackendOptions) {
    for registration in inventory::iter::<BackendRegistration> {
        (registration.configure)(options);
    }
}

/// Opens backend `name` on `device` (`cpu`, `cuda:0`, ...) with default options.
pub fn open_backend(name: &str, device: &str) -> Result<Arc<dyn Backend>> {
    open_backend_with(name, device, &BackendOptions::default())
}

/// Opens backend `name` on `device` with `options`.
pub fn open_backend_with(name: &str, device: &str, options: &BackendOptions) -> Result<Arc<dyn Backend>> {
    let spec: DeviceSpec = device.parse()?;
    let registration = inventory::iter::<BackendRegistration>
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| Error::BackendUnavailable {
            name: name.to_string(),
            device: device.to_string(),
            hint: format!(
                "compiled backends: {}; backends are cargo features of the `hamos` crate \
                 (`--features tch` needs libtorch from scripts/install-libtorch.sh)",
                backend_names().join(", ")
            ),
        })?;
    (registration.open)(spec, options)
}
