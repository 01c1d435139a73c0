//! Fused CPU kernels for the hot ops of outlier synthesis, candle's
//! [`hamos_api::BankKernels`] (see `backend.rs`): [`hamos_api::Tensor::class_logsumexp`] (the vMF barrier) and
//! [`hamos_api::Tensor::class_kth_nearest`] (the k-NN energy) stream the bank once through one
//! tile kernel (`simd.rs`) and never build the `[m, c * s]` intermediate;
//! [`hamos_api::Tensor::class_gram`] (the barrier's screening moments) computes only the upper
//! triangle. Off the CPU they return `None` and the generic versions run.

pub(crate) mod batch_norm;
pub(crate) mod conv;
mod gram;
mod im2col;
mod kth;
mod logsumexp;
mod narrow;
mod packing;
mod pool;
pub(crate) mod pool2d;
mod simd;

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, DType, Device, Storage, Tensor as CTensor, TensorId};
use hamos_api::{Error, Result};

use crate::tensor::Op;
use packing::PackedBank;

/// The packed forms of the last banks the kernels met, newest first, by candle tensor id: one
/// round of synthesis calls them many times with one bank. Ids are never reused and candle
/// tensors are immutable (variables, whose values may change, are never cached), so an entry
/// cannot go stale; it only holds memory (a CIFAR-100 bank of 100 x 1000 x 128 packs to
/// about 51 MB) until newer banks push it out.
static PACKED_BANKS: Mutex<Vec<(TensorId, Arc<PackedBank>)>> = Mutex::new(Vec::new());
/// How many packed banks [`PACKED_BANKS`] keeps.
const PACKED_BANKS_KEPT: usize = 2;

/// Runs `f` with `bank`'s packed form: from [`PACKED_BANKS`], or built now (and kept unless
/// the tensor is a variable).
fn with_packed<T>(bank: &CTensor, values: &[f32], f: impl FnOnce(&PackedBank) -> T) -> T {
    let (classes, capacity, dim) = match bank.dims() {
        &[c, s, d] => (c, s, d),
        _ => (0, 0, 0),
    };
    let build = || PackedBank::new(values, classes, capacity, dim);
    if bank.is_variable() {
        return f(&build());
    }
    let id = bank.id();
    let cached = PACKED_BANKS.lock().ok().and_then(|banks| {
        banks.iter().find(|(cached, _)| *cached == id).map(|(_, packed)| Arc::clone(packed))
    });
    if let Some(packed) = cached {
        return f(&packed);
    }
    let packed = Arc::new(build());
    if let Ok(mut banks) = PACKED_BANKS.lock() {
        if !banks.iter().any(|(cached, _)| *cached == id) {
            banks.insert(0, (id, Arc::clone(&packed)));
            banks.truncate(PACKED_BANKS_KEPT);
        }
    }
    f(&packed)
}

/// Runs `f` on the `f32` host slices of contiguous `queries` `[m, d]` and `bank` `[c, s, d]`;
/// `None` when they are not `f32` on the CPU.
fn with_cpu_slices<T>(
    op: &'static str,
    queries: &CTensor,
    bank: &CTensor,
    f: impl FnOnce(&[f32], &[f32], usize, usize) -> T,
) -> Option<Result<T>> {
    let on_cpu = |t: &CTensor| matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32;
    if !on_cpu(queries) || !on_cpu(bank) {
        return None;
    }
    let run = || -> Result<T> {
        let (&[_, dim], &[_, capacity, _]) = (queries.dims(), bank.dims()) else {
            return Err(Error::shape(op, "needs [m, d] queries and a [c, s, d] bank"));
        };
        let (queries, bank) = (queries.contiguous().op(op)?, bank.contiguous().op(op)?);
        let (q_storage, q_layout) = queries.storage_and_layout();
        let (b_storage, b_layout) = bank.storage_and_layout();
        let q = cpu_slice(op, &q_storage, q_layout.start_offset(), queries.elem_count())?;
        let b = cpu_slice(op, &b_storage, b_layout.start_offset(), bank.elem_count())?;
        Ok(f(q, b, dim, capacity))
    };
    Some(run())
}

fn cpu_slice<'a>(op: &'static str, storage: &'a Storage, offset: usize, len: usize) -> Result<&'a [f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(values)) => values
            .get(offset..offset + len)
            .ok_or_else(|| Error::shape(op, "storage shorter than its layout")),
        _ => Err(Error::shape(op, "fused kernel needs F32 tensors on the CPU")),
    }
}

/// The fused class-wise log-sum-exp, `[m, c]`; `None` off the CPU.
pub(crate) fn class_logsumexp(
    queries: &CTensor,
    bank: &CTensor,
    counts: &[usize],
    scale: f64,
) -> Option<Result<CTensor>> {
    let out = with_cpu_slices("class_logsumexp", queries, bank, |q, b, dim, _| {
        with_packed(bank, b, |packed| logsumexp::class_logsumexp(q, dim, packed, counts, scale as f32))
    })?;
    let m = queries.dims()[0];
    Some(
        out.and_then(|values| {
            CTensor::from_vec(values, (m, counts.len()), &Device::Cpu).op("class_logsumexp")
        }),
    )
}

/// The fused per-class Gram matrices `[c, d, d]` of a `[c, s, d]` bank; `None` off the CPU.
pub(crate) fn class_gram(bank: &CTensor) -> Option<Result<CTensor>> {
    if !(matches!(bank.device(), Device::Cpu) && bank.dtype() == DType::F32) {
        return None;
    }
    let &[classes, capacity, dim] = bank.dims() else { return None };
    let run = || -> Result<CTensor> {
        let bank = bank.contiguous().op("class_gram")?;
        let (storage, layout) = bank.storage_and_layout();
        let values = cpu_slice("class_gram", &storage, layout.start_offset(), bank.elem_count())?;
        let gram = gram::class_gram(values, classes, capacity, dim);
        CTensor::from_vec(gram, (classes, dim, dim), &Device::Cpu).op("class_gram")
    };
    Some(run())
}

/// Rows of a contiguous `f32` `[n, d]` CPU tensor copied out of its storage (no intermediate
/// tensor); `None` for other tensors.
pub(crate) fn rows_to_host(tensor: &CTensor, rows: &[usize]) -> Option<Result<Vec<f32>>> {
    let on_cpu = matches!(tensor.device(), Device::Cpu) && tensor.dtype() == DType::F32;
    let &[n, dim] = tensor.dims() else { return None };
    if !(on_cpu && tensor.is_contiguous()) {
        return None;
    }
    let (storage, layout) = tensor.storage_and_layout();
    let copy = || -> Result<Vec<f32>> {
        let values = cpu_slice("rows_to_host", &storage, layout.start_offset(), n * dim)?;
        let mut out = Vec::with_capacity(rows.len() * dim);
        for &row in rows {
            let values = values.get(row * dim..(row + 1) * dim).ok_or_else(|| {
                Error::shape("rows_to_host", format!("row {row} out of range for {n} rows"))
            })?;
            out.extend_from_slice(values);
        }
        Ok(out)
    };
    Some(copy())
}

/// The fused k-th nearest rows, `[targets]` `I64`; `None` off the CPU.
pub(crate) fn class_kth_nearest(
    queries: &CTensor,
    bank: &CTensor,
    counts: &[usize],
    targets: &[(usize, usize)],
    k: usize,
) -> Option<Result<CTensor>> {
    let out = with_cpu_slices("class_kth_nearest", queries, bank, |q, b, dim, _| {
        with_packed(bank, b, |packed| kth::class_kth_nearest(q, dim, b, packed, counts, targets, k))
    })?;
    Some(out.and_then(|rows| {
        let len = rows.len();
        CTensor::from_vec(rows, len, &Device::Cpu).op("class_kth_nearest")
    }))
}
