//! [`TchBackend`]: tensor factories on one libtorch device.

use std::fmt;

use hamos_api::{Backend, DType, DeviceSpec, Error, Result, Tensor};
use tch::{Device, Kind};

use crate::tensor::{dtype_of, i64_dims, tch_err, TchTensor};
use crate::BACKEND_NAME;

/// The tch backend on one device: makes [`TchTensor`]s.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TchBackend {
    device: Device,
    spec: DeviceSpec,
}

impl fmt::Debug for TchBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TchBackend({})", self.spec)
    }
}

impl TchBackend {
    /// Opens the backend on `spec`, checking that a CUDA device exists in this build and machine.
    pub fn new(spec: DeviceSpec) -> Result<Self> {
        match spec {
            DeviceSpec::Cpu => Ok(Self::cpu()),
            DeviceSpec::Cuda(ordinal) => {
                let unavailable = |why: String| Error::BackendUnavailable {
                    name: BACKEND_NAME.to_string(),
                    device: spec.to_string(),
                    hint: format!(
                        "{why}; build with `--features cuda` (for the hamos crate: \
                         `--features tch,cuda`) against the full torch wheel \
                         (`HAMOS_TORCH_FULL=1 scripts/install-libtorch.sh`) on a machine with a \
                         CUDA GPU, or use `cpu`"
                    ),
                };
                if !tch::Cuda::is_available() {
                    return Err(unavailable("libtorch sees no CUDA device".to_string()));
                }
                let count = tch::Cuda::device_count();
                if i64::try_from(ordinal).map_or(true, |n| n >= count) {
                    return Err(unavailable(format!(
                        "libtorch sees {count} CUDA device(s), so there is no cuda:{ordinal}"
                    )));
                }
                Ok(TchBackend { device: Device::Cuda(ordinal), spec })
            }
        }
    }

    /// The backend on the host CPU (always available).
    pub fn cpu() -> Self {
        TchBackend { device: Device::Cpu, spec: DeviceSpec::Cpu }
    }

    /// The backend of an existing tch device, without checking that it is available.
    pub(crate) fn for_device(device: Device) -> Self {
        let spec = match device {
            Device::Cuda(n) => DeviceSpec::Cuda(n),
            _ => DeviceSpec::Cpu,
        };
        TchBackend { device, spec }
    }

    /// The libtorch device tensors are allocated on.
    pub fn tch_device(&self) -> Device {
        self.device
    }

    /// Wraps a tch tensor, moving it to this backend's device if it lives elsewhere.
    pub fn wrap(&self, tensor: tch::Tensor) -> Result<Tensor> {
        let tensor = if tensor.device() == self.device {
            tensor
        } else {
            tensor.f_to_device(self.device).map_err(tch_err("wrap"))?
        };
        Ok(Tensor::from_impl(TchTensor::new(tensor)))
    }

    /// Checks that `data` fills `dims` and makes the tensor on this device.
    fn upload<T: tch::kind::Element>(&self, op: &'static str, data: &[T], dims: &[usize]) -> Result<Tensor> {
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| Error::shape(op, format!("shape {dims:?} overflows")))?;
        if count != data.len() {
            return Err(Error::shape(
                op,
                format!("{} values cannot fill shape {dims:?} ({count} elements)", data.len()),
            ));
        }
        let shape = i64_dims(op, dims)?;
        let tensor = tch::Tensor::f_from_slice(data)
            .and_then(|t| t.f_reshape(shape.as_slice()))
            .map_err(tch_err(op))?;
        self.wrap(tensor)
    }

    /// Downcasts a tensor handed to one of this backend's factories.
    fn own<'a>(&self, op: &'static str, tensor: &'a Tensor) -> Result<&'a TchTensor> {
        match tensor.downcast_ref::<TchTensor>() {
            Some(t) if t.raw().device() == self.device => Ok(t),
            _ => Err(Error::BackendMismatch {
                op,
                left: format!("{BACKEND_NAME} {}", self.spec),
                right: tensor.location(),
            }),
        }
    }
}

impl Backend for TchBackend {
    fn name(&self) -> &'static str {
        BACKEND_NAME
    }

    fn device(&self) -> DeviceSpec {
        self.spec
    }

    fn from_f32(&self, data: &[f32], dims: &[usize]) -> Result<Tensor> {
        self.upload("from_f32", data, dims)
    }

    fn from_i64(&self, data: &[i64], dims: &[usize]) -> Result<Tensor> {
        self.upload("from_i64", data, dims)
    }

    fn full(&self, value: f32, dims: &[usize]) -> Result<Tensor> {
        let shape = i64_dims("full", dims)?;
        let tensor = tch::Tensor::f_full(shape.as_slice(), f64::from(value), (Kind::Float, self.device))
            .map_err(tch_err("full"))?;
        Ok(Tensor::from_impl(TchTensor::new(tensor)))
    }

    fn cat(&self, tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let parts =
            tensors.iter().map(|t| self.own("cat", t).map(TchTensor::raw)).collect::<Result<Vec<_>>>()?;
        let first = parts.first().ok_or_else(|| Error::shape("cat", "needs at least one tensor"))?;
        let rank = first.dim();
        if dim >= rank {
            return Err(Error::shape("cat", format!("dim {dim} out of range for shape {:?}", first.size())));
        }
        for part in &parts[1..] {
            let (a, b) = (first.size(), part.size());
            let compatible =
                a.len() == b.len() && a.iter().zip(&b).enumerate().all(|(d, (x, y))| d == dim || x == y);
            if !compatible {
                return Err(Error::shape("cat", format!("shapes {a:?} and {b:?} differ outside dim {dim}")));
            }
        }
        let out = tch::Tensor::f_cat(&parts, dim as i64).map_err(tch_err("cat"))?;
        Ok(Tensor::from_impl(TchTensor::new(out)))
    }

    fn variable(&self, init: &Tensor) -> Result<Tensor> {
        let init = init
            .downcast_ref::<TchTensor>()
            .ok_or_else(|| Error::BackendMismatch {
                op: "variable",
                left: format!("{BACKEND_NAME} {}", self.spec),
                right: init.location(),
            })?
            .raw();
        if dtype_of(init) != DType::F32 {
            return Err(Error::shape("variable", "needs an F32 tensor (I64 has no gradients)"));
        }
        let leaf = init
            .f_detach_copy()
            .and_then(|t| t.f_to_device(self.device))
            .and_then(|t| t.f_set_requires_grad(true))
            .map_err(tch_err("variable"))?;
        Ok(Tensor::from_impl(TchTensor::new(leaf)))
    }
}
