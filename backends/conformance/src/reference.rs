//! Host-side references: an `f64` [`HostTensor`] with naive-loop ops (in `reference/ops.rs`;
//! convolution and pooling in `reference/network.rs`), the seeded input generator [`Inputs`],
//! and checks that return [`Error`] instead of panicking.
//!
//! Inputs are drawn as `f32` (what a backend stores) and widened to `f64`, so the reference sees
//! exactly the numbers the backend sees and only the backend's own rounding is measured.

mod network;
mod ops;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use hamos_api::backend::randn_host;
use hamos_api::{rng_from_seed, Backend, DType, Error, HamosRng, Result, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;

pub use ops::broadcast_shape;

/// A row-major `f64` tensor on the host: the reference every backend result is compared with.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// The shape.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f64>,
}

impl HostTensor {
    /// A tensor from its shape and data; the data length must match the shape.
    pub fn new(dims: &[usize], data: Vec<f64>) -> Result<Self> {
        let count: usize = dims.iter().product();
        if count != data.len() {
            return Err(Error::shape(
                "HostTensor::new",
                format!("shape {dims:?} needs {count} elements, got {}", data.len()),
            ));
        }
        Ok(HostTensor { dims: dims.to_vec(), data })
    }

    /// A tensor from `f32` data.
    pub fn from_f32(dims: &[usize], data: &[f32]) -> Result<Self> {
        Self::new(dims, data.iter().map(|&v| f64::from(v)).collect())
    }

    /// Copies a backend tensor to the host (as `f32`, widened).
    pub fn download(tensor: &Tensor) -> Result<Self> {
        Self::from_f32(&tensor.dims(), &tensor.to_vec_f32()?)
    }

    /// The elements rounded to `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&v| v as f32).collect()
    }

    /// An `F32` tensor with these elements on `backend`.
    pub fn upload(&self, backend: &Arc<dyn Backend>) -> Result<Tensor> {
        backend.from_f32(&self.to_f32(), &self.dims)
    }

    /// A trainable variable with these elements on `backend`.
    pub fn variable(&self, backend: &Arc<dyn Backend>) -> Result<Tensor> {
        backend.variable(&self.upload(backend)?)
    }

    /// The elements rounded to the nearest `f32`, as a backend would store them: use this on
    /// computed inputs so the reference sees exactly what the backend sees.
    pub fn round_f32(&self) -> HostTensor {
        self.map(|v| f64::from(v as f32))
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.data.len()
    }
}

/// Seeded random inputs. Every generator avoids zeros (and near-zeros) so that a backend that
/// ignores its input, or returns zeros, cannot pass by accident.
#[derive(Debug)]
pub struct Inputs {
    rng: HamosRng,
}

impl Inputs {
    /// Inputs for one case; the seed makes every failure reproducible.
    pub fn new(seed: u64) -> Self {
        Inputs { rng: rng_from_seed(seed) }
    }

    /// The RNG, for backend factories such as `randn`.
    pub fn rng(&mut self) -> &mut HamosRng {
        &mut self.rng
    }

    /// Standard normal samples with `|x| >= 0.05` (small values are pushed away from 0, which
    /// also keeps them clear of the kinks of `abs`, `relu` and friends).
    pub fn normal(&mut self, dims: &[usize]) -> HostTensor {
        let n = dims.iter().product();
        let data = randn_host(n, 0.0, 1.0, &mut self.rng)
            .into_iter()
            .map(|v| {
                let v = f64::from(v);
                if v.abs() < 0.05 {
                    let pushed = (0.05 + v.abs()) as f32;
                    f64::from(pushed).copysign(if v == 0.0 { 1.0 } else { v })
                } else {
                    v
                }
            })
            .collect();
        HostTensor { dims: dims.to_vec(), data }
    }

    /// Uniform samples in `[low, high)`, rounded to `f32`.
    pub fn uniform(&mut self, dims: &[usize], low: f32, high: f32) -> HostTensor {
        let n: usize = dims.iter().product();
        let data = (0..n).map(|_| f64::from(self.rng.random_range(low..high))).collect();
        HostTensor { dims: dims.to_vec(), data }
    }

    /// Positive samples in `[0.5, 2)`, for `log`, `sqrt` and denominators.
    pub fn positive(&mut self, dims: &[usize]) -> HostTensor {
        self.uniform(dims, 0.5, 2.0)
    }

    /// Pairwise-distinct samples in about `[-3, 3]`, any two at least `4.5 / n` apart: a shuffled
    /// grid with jitter. For sorts, `max` and `argmax`, where ties would make answers ambiguous.
    pub fn distinct(&mut self, dims: &[usize]) -> HostTensor {
        let n: usize = dims.iter().product();
        let step = 6.0 / n.max(1) as f64;
        let mut grid: Vec<usize> = (0..n).collect();
        grid.shuffle(&mut self.rng);
        let data = grid
            .into_iter()
            .map(|i| {
                let jitter: f64 = self.rng.random_range(0.0..step / 4.0);
                let v = (i as f64 - n as f64 / 2.0) * step + jitter;
                let v = if v.abs() < step / 8.0 { step / 4.0 } else { v };
                f64::from(v as f32)
            })
            .collect();
        HostTensor { dims: dims.to_vec(), data }
    }

    /// `count` random indices in `0..bound`.
    pub fn indices(&mut self, count: usize, bound: usize) -> Vec<i64> {
        (0..count).map(|_| self.rng.random_range(0..bound as i64)).collect()
    }
}

/// Checks `got` against `want` element-wise: `|got - want| <= tol * (1 + |want|)` (absolute
/// near zero, relative for large values). NaN matches only NaN, infinities only themselves.
pub fn assert_close(op: &str, got: &[f32], want: &[f64], tol: f64) -> Result<()> {
    if got.len() != want.len() {
        return Err(Error::Data(format!("{op}: got {} elements, want {}", got.len(), want.len())));
    }
    let off = |g: f64, w: f64| {
        if w.is_nan() || g.is_nan() {
            !(w.is_nan() && g.is_nan())
        } else if w.is_infinite() || g.is_infinite() {
            g != w
        } else {
            (g - w).abs() > tol * (1.0 + w.abs())
        }
    };
    let bad: Vec<usize> = (0..got.len()).filter(|&i| off(f64::from(got[i]), want[i])).collect();
    match bad.first() {
        None => Ok(()),
        Some(&i) => Err(Error::Data(format!(
            "{op}: element {i} is {}, want {} (tolerance {tol}; {} of {} elements off)",
            got[i],
            want[i],
            bad.len(),
            got.len()
        ))),
    }
}

/// Checks a backend tensor's shape, dtype `F32` and values against a host reference.
pub fn assert_tensor(op: &str, got: &Tensor, want: &HostTensor, tol: f64) -> Result<()> {
    assert_dims(op, got, &want.dims)?;
    assert_dtype(op, got, DType::F32)?;
    assert_close(op, &got.to_vec_f32()?, &want.data, tol)
}

/// Checks a tensor's shape.
pub fn assert_dims(op: &str, got: &Tensor, want: &[usize]) -> Result<()> {
    let dims = got.dims();
    if dims == want {
        Ok(())
    } else {
        Err(Error::Data(format!("{op}: shape is {dims:?}, want {want:?}")))
    }
}

/// Checks a tensor's element type.
pub fn assert_dtype(op: &str, got: &Tensor, want: DType) -> Result<()> {
    let dtype = got.dtype();
    if dtype == want {
        Ok(())
    } else {
        Err(Error::Data(format!("{op}: dtype is {dtype:?}, want {want:?}")))
    }
}

/// Checks integer results exactly.
pub fn assert_i64(op: &str, got: &[i64], want: &[i64]) -> Result<()> {
    if got.len() != want.len() {
        return Err(Error::Data(format!("{op}: got {} elements, want {}", got.len(), want.len())));
    }
    match (0..got.len()).find(|&i| got[i] != want[i]) {
        None => Ok(()),
        Some(i) => Err(Error::Data(format!(
            "{op}: element {i} is {}, want {} (got {got:?}, want {want:?})",
            got[i], want[i]
        ))),
    }
}

/// An [`Error::Data`] unless `cond` holds.
pub fn ensure(cond: bool, op: &str, msg: impl FnOnce() -> String) -> Result<()> {
    if cond {
        Ok(())
    } else {
        Err(Error::Data(format!("{op}: {}", msg())))
    }
}

/// Runs `f`, turning a panic into an [`Error::Data`] that names `op` and the panic message.
pub fn no_panic<T>(op: &str, f: impl FnOnce() -> Result<T>) -> Result<Result<T>> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        Error::Data(format!(
            "{op}: panicked instead of returning a Result: {}",
            panic_message(payload.as_ref())
        ))
    })
}

/// Checks that `f` returns `Err` (and does not panic); gives back the error.
pub fn expect_err<T: std::fmt::Debug>(op: &str, f: impl FnOnce() -> Result<T>) -> Result<Error> {
    match no_panic(op, f)? {
        Err(e) => Ok(e),
        Ok(v) => Err(Error::Data(format!("{op}: returned Ok({v:?}), want an error"))),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}
