use std::sync::Arc;

use candle_core::{DType as CDType, Device, Tensor as CTensor};
use hamos_api::{Backend, BackendOptions, BankKernels, DeviceSpec, Error, Result, Tensor};

use crate::tensor::{wrap, CandleTensor, Op};

/// The candle backend on one device.
#[derive(Debug, Clone)]
pub struct CandleBackend {
    device: Device,
}

impl CandleBackend {
    /// On the CPU.
    pub fn cpu() -> Self {
        crate::tune_allocator();
        CandleBackend { device: Device::Cpu }
    }

    /// On `spec`, or [`Error::BackendUnavailable`] with what to do.
    pub fn new(spec: DeviceSpec) -> Result<Self> {
        match spec {
            DeviceSpec::Cpu => Ok(Self::cpu()),
            DeviceSpec::Cuda(ordinal) => cuda(ordinal).map(|device| CandleBackend { device }),
        }
    }

    /// Wraps an existing candle device.
    pub fn from_device(device: Device) -> Self {
        if device.is_cpu() {
            crate::tune_allocator();
        }
        CandleBackend { device }
    }

    /// The candle device.
    pub fn candle_device(&self) -> &Device {
        &self.device
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::BackendUnavailable {
        name: "candle".into(),
        device: format!("cuda:{ordinal}"),
        hint: format!("candle could not open the GPU: {e}"),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(ordinal: usize) -> Result<Device> {
    Err(Error::BackendUnavailable {
        name: "candle".into(),
        device: format!("cuda:{ordinal}"),
        hint: "this build has no CUDA support; rebuild with `--features cuda`".into(),
    })
}

pub(crate) fn open(spec: DeviceSpec, options: &BackendOptions) -> Result<Arc<dyn Backend>> {
    if options.threads > 0 {
        crate::set_threads(options.threads);
    }
    Ok(Arc::new(CandleBackend::new(spec)?))
}

fn check_len(op: &'static str, len: usize, dims: &[usize]) -> Result<()> {
    let want: usize = dims.iter().product();
    if len != want {
        return Err(Error::shape(op, format!("{len} values cannot fill shape {dims:?} ({want} elements)")));
    }
    Ok(())
}

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn device(&self) -> DeviceSpec {
        match self.device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => DeviceSpec::Cuda(gpu_id),
            _ => DeviceSpec::Cpu,
        }
    }

    fn from_f32(&self, data: &[f32], dims: &[usize]) -> Result<Tensor> {
        check_len("from_f32", data.len(), dims)?;
        wrap(candle_core::Tensor::from_slice(data, dims, &self.device).op("from_f32")?)
    }

    fn from_i64(&self, data: &[i64], dims: &[usize]) -> Result<Tensor> {
        check_len("from_i64", data.len(), dims)?;
        wrap(candle_core::Tensor::from_slice(data, dims, &self.device).op("from_i64")?)
    }

    fn full(&self, value: f32, dims: &[usize]) -> Result<Tensor> {
        wrap(candle_core::Tensor::full(value, dims, &self.device).op("full")?)
    }

    fn cat(&self, tensors: &[&Tensor], dim: usize) -> Result<Tensor> {
        let first = tensors.first().ok_or_else(|| Error::shape("cat", "needs at least one tensor"))?;
        let lhs = first.inner();
        let parts = tensors
            .iter()
            .map(|t| t.expect_backend::<CandleTensor>("cat", lhs).map(|c| c.raw().clone()))
            .collect::<Result<Vec<_>>>()?;
        let rank = parts[0].rank();
        if dim >= rank {
            return Err(Error::shape("cat", format!("dim {dim} out of range for rank {rank}")));
        }
        wrap(candle_core::Tensor::cat(&parts, dim).op("cat")?)
    }

    fn variable(&self, init: &Tensor) -> Result<Tensor> {
        let raw = init.expect_backend::<CandleTensor>("variable", init.inner())?.raw();
        let values = raw.to_dtype(CDType::F32).op("variable")?;
        let var = candle_core::Var::from_tensor(&values).op("variable")?;
        wrap(var.as_tensor().clone())
    }

    fn bank_kernels(&self) -> &dyn BankKernels {
        self
    }
}

/// The class-bank kernels fused on the CPU (`fused/`); elsewhere the generic ones.
impl BankKernels for CandleBackend {
    fn class_logsumexp(
        &self,
        queries: &Tensor,
        bank: &Tensor,
        counts: &[usize],
        scale: f64,
    ) -> Result<Tensor> {
        let (raw_queries, raw_bank) = raw_pair("class_logsumexp", queries, bank)?;
        match crate::fused::class_logsumexp(raw_queries, raw_bank, counts, scale) {
            Some(fused) => wrap(fused?),
            None => hamos_api::tensor::generic_class_logsumexp(queries, bank, counts, scale),
        }
    }

    fn class_gram(&self, bank: &Tensor) -> Result<Tensor> {
        let raw = bank.expect_backend::<CandleTensor>("class_gram", bank.inner())?.raw();
        match crate::fused::class_gram(raw) {
            Some(fused) => wrap(fused?),
            None => hamos_api::tensor::generic_class_gram(bank),
        }
    }

    fn rows_to_host(&self, tensor: &Tensor, rows: &[usize]) -> Result<Vec<f32>> {
        let raw = tensor.expect_backend::<CandleTensor>("rows_to_host", tensor.inner())?.raw();
        match crate::fused::rows_to_host(raw, rows) {
            Some(fused) => fused,
            None => hamos_api::tensor::generic_rows_to_host(tensor, rows),
        }
    }

    fn class_kth_nearest(
        &self,
        queries: &Tensor,
        bank: &Tensor,
        counts: &[usize],
        targets: &[(usize, usize)],
        k: usize,
    ) -> Result<Tensor> {
        let (raw_queries, raw_bank) = raw_pair("class_kth_nearest", queries, bank)?;
        match crate::fused::class_kth_nearest(raw_queries, raw_bank, counts, targets, k) {
            Some(fused) => wrap(fused?),
            None => hamos_api::tensor::generic_class_kth_nearest(queries, bank, counts, targets, k),
        }
    }
}

/// The candle tensors of `queries` and `bank`, or a backend mismatch naming `op`.
fn raw_pair<'a>(
    op: &'static str,
    queries: &'a Tensor,
    bank: &'a Tensor,
) -> Result<(&'a CTensor, &'a CTensor)> {
    let raw_queries = queries.expect_backend::<CandleTensor>(op, queries.inner())?.raw();
    let raw_bank = bank.expect_backend::<CandleTensor>(op, queries.inner())?.raw();
    Ok((raw_queries, raw_bank))
}
