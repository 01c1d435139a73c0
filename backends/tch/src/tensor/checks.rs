//! Conversions and argument checks of the tch tensor: dtype and device names, error mapping,
//! broadcasting shapes, index bounds and dtypes, each returning an error that names the op.

use hamos_api::{DType, Error, Result, Tensor};
use tch::{Device, Kind, TchError};

use super::{dtype_of, tch_err, TchTensor};

/// The tch kind of a hamos dtype.
pub(super) fn kind_of(dtype: DType) -> Kind {
    match dtype {
        DType::F32 => Kind::Float,
        DType::I64 => Kind::Int64,
    }
}

/// `cpu` or `cuda:N`.
pub(super) fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".to_string(),
        Device::Vulkan => "vulkan".to_string(),
    }
}

/// Maps the error of a tch op, brings the result to `Float` or `Int64`, and wraps it.
pub(crate) fn finish(op: &'static str, result: Result<tch::Tensor, TchError>) -> Result<Tensor> {
    let tensor = result.map_err(tch_err(op))?;
    Ok(Tensor::from_impl(TchTensor(normalize(op, tensor)?)))
}

/// Converts a tensor of any other kind to `Float` or `Int64`.
pub(super) fn normalize(op: &'static str, tensor: tch::Tensor) -> Result<tch::Tensor> {
    match tensor.f_kind() {
        Ok(Kind::Float | Kind::Int64) => Ok(tensor),
        _ => tensor.f_to_kind(kind_of(dtype_of(&tensor))).map_err(tch_err(op)),
    }
}

/// The numpy broadcast of `shapes`, or a shape error naming them.
pub(super) fn broadcast_shapes(op: &'static str, shapes: &[Vec<i64>]) -> Result<Vec<i64>> {
    let rank = shapes.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = vec![1i64; rank];
    for shape in shapes {
        let offset = rank - shape.len();
        for (i, &d) in shape.iter().enumerate() {
            let o = &mut out[offset + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(Error::shape(op, format!("shapes {shapes:?} do not broadcast")));
            }
        }
    }
    Ok(out)
}

/// Checks that every index lies in `0..size`, on the CPU only: elsewhere reading the verdict
/// is a device sync on every call, so there the caller vouches for its indices (an index out of
/// range raises a device-side assert on CUDA, which poisons the context).
pub(super) fn check_indices(op: &'static str, indices: &tch::Tensor, size: i64) -> Result<()> {
    if indices.device() != Device::Cpu {
        return Ok(());
    }
    let bad = indices
        .f_lt(0i64)
        .and_then(|low| indices.f_ge(size).and_then(|high| low.f_logical_or(&high)))
        .and_then(|bad| bad.f_any())
        .and_then(|any| any.f_int64_value(&[]))
        .map_err(tch_err(op))?;
    if bad != 0 {
        return Err(Error::shape(op, format!("index out of range 0..{size}")));
    }
    Ok(())
}

/// Checks that `indices` are `I64`.
pub(super) fn check_index_dtype(op: &'static str, indices: &tch::Tensor) -> Result<()> {
    match indices.f_kind() {
        Ok(Kind::Int64) => Ok(()),
        other => Err(Error::shape(op, format!("indices must be I64, got {other:?}"))),
    }
}
