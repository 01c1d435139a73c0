use std::any::Any;
use std::sync::Arc;

use candle_core::{DType as CDType, Device, Tensor as CTensor};
use hamos_api::{
    broadcast_shape, Backend, BinaryOp, CmpOp, DType, Error, ReduceOp, Result, Tensor, TensorImpl, UnaryOp,
};

use crate::backend::CandleBackend;
use crate::fused::batch_norm::BnRecipe;

/// A candle tensor behind the shared tensor trait.
///
/// The second field is the recipe of a fused batch-norm output, so that a ReLU and a max
/// pooling applied next fuse with it.
#[derive(Debug, Clone)]
pub struct CandleTensor(CTensor, Option<Arc<BnRecipe>>);

impl CandleTensor {
    /// Wraps a candle tensor.
    pub fn new(raw: CTensor) -> Self {
        CandleTensor(raw, None)
    }

    /// Wraps the output of a fused batch norm (or of the ReLU fused after one) with its recipe.
    pub(crate) fn with_recipe(raw: CTensor, recipe: BnRecipe) -> Self {
        CandleTensor(raw, Some(Arc::new(recipe)))
    }

    /// The recipe of a fused batch-norm output.
    pub(crate) fn recipe(&self) -> Option<&BnRecipe> {
        self.1.as_deref()
    }

    /// The candle tensor.
    pub fn raw(&self) -> &CTensor {
        &self.0
    }
}

/// Maps candle errors to [`Error::Backend`] naming the op.
pub(crate) trait Op<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> Op<T> for candle_core::Result<T> {
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|e| Error::backend("candle", op, e))
    }
}

pub(crate) fn wrap(raw: CTensor) -> Result<Tensor> {
    Ok(Tensor::from_impl(CandleTensor::new(raw)))
}

fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        candle_core::DeviceLocation::Cpu => "cpu".to_string(),
    }
}

impl CandleTensor {
    fn operand<'a>(&self, op: &'static str, rhs: &'a Tensor) -> Result<&'a CTensor> {
        Ok(rhs.expect_backend::<CandleTensor>(op, self)?.raw())
    }

    fn check_dim(&self, op: &'static str, dim: usize) -> Result<()> {
        if dim >= self.0.rank() {
            return Err(Error::shape(op, format!("dim {dim} out of range for shape {:?}", self.0.dims())));
        }
        Ok(())
    }

    fn check_f32(&self, op: &'static str) -> Result<()> {
        if self.0.dtype() != CDType::F32 {
            return Err(Error::shape(op, format!("needs an F32 tensor, got {:?}", self.0.dtype())));
        }
        Ok(())
    }

    fn indices(&self, op: &'static str, indices: &Tensor) -> Result<CTensor> {
        let raw = self.operand(op, indices)?;
        if raw.dtype() != CDType::I64 {
            return Err(Error::shape(op, format!("indices must be I64, got {:?}", raw.dtype())));
        }
        raw.contiguous().op(op)
    }

    /// Indices of the `k` largest or smallest entries of each row along the last dim, computed
    /// exactly on the host: partial selection is O(width) per row and has no width limit (candle's
    /// CUDA argsort fails above 8192 columns).
    fn topk_indices_last_dim(&self, k: usize, largest: bool) -> Result<CTensor> {
        self.select_last_dim(k, largest, true)
    }

    /// Indices of the `k` extreme entries of each last-dim row (sorted when `sorted`; otherwise
    /// only the last one, the `k`-th, is returned).
    fn select_last_dim(&self, k: usize, largest: bool, sorted: bool) -> Result<CTensor> {
        let dims = self.0.dims().to_vec();
        let width = *dims.last().unwrap_or(&1);
        let values =
            self.0.flatten_all().op("topk")?.to_dtype(CDType::F32).op("topk")?.to_vec1::<f32>().op("topk")?;
        let order = |a: &f32, b: &f32| if largest { b.total_cmp(a) } else { a.total_cmp(b) };
        let mut picked = Vec::with_capacity(values.len() / width.max(1) * k);
        let mut slots: Vec<usize> = Vec::with_capacity(width);
        for row in values.chunks(width.max(1)) {
            slots.clear();
            slots.extend(0..row.len());
            let cmp = |a: &usize, b: &usize| order(&row[*a], &row[*b]).then(a.cmp(b));
            if sorted {
                if k < row.len() {
                    slots.select_nth_unstable_by(k, cmp);
                }
                slots.truncate(k);
                slots.sort_unstable_by(cmp);
                picked.extend(slots.iter().map(|&i| i as i64));
            } else {
                // Partial selection puts the k-th in place; nothing is sorted.
                slots.select_nth_unstable_by(k - 1, cmp);
                picked.push(slots[k - 1] as i64);
            }
        }
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = if sorted { k } else { 1 };
        }
        CTensor::from_vec(picked, out_dims, self.0.device()).op("topk")
    }
}

impl TensorImpl for CandleTensor {
    fn backend_name(&self) -> &'static str {
        "candle"
    }

    fn device_name(&self) -> String {
        device_name(self.0.device())
    }

    fn backend(&self) -> Arc<dyn Backend> {
        Arc::new(CandleBackend::from_device(self.0.device().clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn boxed_clone(&self) -> Box<dyn TensorImpl> {
        Box::new(self.clone())
    }

    fn dims(&self) -> Vec<usize> {
        self.0.dims().to_vec()
    }

    fn dtype(&self) -> DType {
        match self.0.dtype() {
            CDType::I64 | CDType::U32 | CDType::U8 => DType::I64,
            _ => DType::F32,
        }
    }

    fn reshape(&self, dims: &[usize]) -> Result<Tensor> {
        if dims.iter().product::<usize>() != self.0.elem_count() {
            return Err(Error::shape("reshape", format!("cannot reshape {:?} into {dims:?}", self.0.dims())));
        }
        wrap(self.0.reshape(dims).op("reshape")?)
    }

    fn transpose(&self, dim0: usize, dim1: usize) -> Result<Tensor> {
        self.check_dim("transpose", dim0.max(dim1))?;
        wrap(self.0.transpose(dim0, dim1).op("transpose")?)
    }

    fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        self.check_dim("narrow", dim)?;
        let size = self.0.dims()[dim];
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::shape(
                "narrow",
                format!("{start}..{start}+{len} out of range for dim {dim} of {:?}", self.0.dims()),
            ));
        }
        wrap(self.0.narrow(dim, start, len).op("narrow")?)
    }

    fn broadcast_as(&self, dims: &[usize]) -> Result<Tensor> {
        if broadcast_shape("broadcast_as", self.0.dims(), dims)? != dims {
            return Err(Error::shape(
                "broadcast_as",
                format!("cannot broadcast {:?} to {dims:?}", self.0.dims()),
            ));
        }
        wrap(self.0.broadcast_as(dims).op("broadcast_as")?)
    }

    fn binary(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        let rhs = self.operand("binary", rhs)?;
        broadcast_shape("binary", self.0.dims(), rhs.dims())?;
        let out = match op {
            BinaryOp::Add => self.0.broadcast_add(rhs).op("add"),
            BinaryOp::Sub => self.0.broadcast_sub(rhs).op("sub"),
            BinaryOp::Mul => self.0.broadcast_mul(rhs).op("mul"),
            BinaryOp::Div => self.0.broadcast_div(rhs).op("div"),
            BinaryOp::Maximum => self.0.broadcast_maximum(rhs).op("maximum"),
            BinaryOp::Minimum => self.0.broadcast_minimum(rhs).op("minimum"),
        }?;
        wrap(out)
    }

    fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        self.check_f32("unary")?;
        let out = match op {
            UnaryOp::Exp => self.0.exp().op("exp"),
            UnaryOp::Log => self.0.log().op("log"),
            UnaryOp::Sqrt => self.0.sqrt().op("sqrt"),
            UnaryOp::Cos => self.0.cos().op("cos"),
            UnaryOp::Sin => self.0.sin().op("sin"),
            UnaryOp::Abs => self.0.abs().op("abs"),
            UnaryOp::Relu => match self.recipe().and_then(BnRecipe::relu) {
                Some(fused) => {
                    let (out, recipe) = fused.op("relu")?;
                    return Ok(Tensor::from_impl(CandleTensor::with_recipe(out, recipe)));
                }
                None => self.0.relu().op("relu"),
            },
            UnaryOp::Tanh => self.0.tanh().op("tanh"),
        }?;
        wrap(out)
    }

    fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.check_f32("affine")?;
        wrap(self.0.affine(mul, add).op("affine")?)
    }

    fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        self.check_f32("clamp")?;
        if min > max || min.is_nan() || max.is_nan() {
            return Err(Error::shape("clamp", format!("empty range [{min}, {max}]")));
        }
        wrap(self.0.clamp(min as f32, max as f32).op("clamp")?)
    }

    fn reduce(&self, op: ReduceOp, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.check_dim("reduce", dim)?;
        let out = match (op, keepdim) {
            (ReduceOp::Sum, true) => self.0.sum_keepdim(dim),
            (ReduceOp::Sum, false) => self.0.sum(dim),
            (ReduceOp::Max, true) => self.0.max_keepdim(dim),
            (ReduceOp::Max, false) => self.0.max(dim),
            (ReduceOp::Min, true) => self.0.min_keepdim(dim),
            (ReduceOp::Min, false) => self.0.min(dim),
        };
        wrap(out.op("reduce")?)
    }

    fn argmax(&self, dim: usize, keepdim: bool) -> Result<Tensor> {
        self.check_dim("argmax", dim)?;
        let out = if keepdim { self.0.argmax_keepdim(dim) } else { self.0.argmax(dim) };
        wrap(out.op("argmax")?.to_dtype(CDType::I64).op("argmax")?)
    }

    fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let rhs = self.operand("matmul", rhs)?;
        let (ld, rd) = (self.0.dims(), rhs.dims());
        let ok = ld.len() >= 2 && rd.len() >= 2 && ld[ld.len() - 1] == rd[rd.len() - 2];
        if !ok {
            return Err(Error::shape("matmul", format!("cannot multiply {ld:?} by {rd:?}")));
        }
        let out = if ld[..ld.len() - 2] == rd[..rd.len() - 2] {
            // candle's gemm accepts most strided layouts; fall back to copies for the rest.
            self.0.matmul(rhs).or_else(|_| self.0.contiguous()?.matmul(&rhs.contiguous()?))
        } else {
            broadcast_shape("matmul", &ld[..ld.len() - 2], &rd[..rd.len() - 2])?;
            self.0.broadcast_matmul(rhs)
        };
        wrap(out.op("matmul")?)
    }

    fn topk(&self, k: usize, dim: usize, largest: bool) -> Result<(Tensor, Tensor)> {
        self.check_dim("topk", dim)?;
        let width = self.0.dims()[dim];
        if k == 0 || k > width {
            return Err(Error::shape(
                "topk",
                format!("k = {k} must be in 1..={width} for dim {dim} of {:?}", self.0.dims()),
            ));
        }
        let last = self.0.rank() - 1;
        let moved = if dim == last { self.0.clone() } else { self.0.transpose(dim, last).op("topk")? };
        let indices = CandleTensor::new(moved.clone()).topk_indices_last_dim(k, largest)?;
        let values = moved.contiguous().op("topk")?.gather(&indices, last).op("topk")?;
        let (values, indices) = if dim == last {
            (values, indices)
        } else {
            (values.transpose(dim, last).op("topk")?, indices.transpose(dim, last).op("topk")?)
        };
        Ok((wrap(values)?, wrap(indices)?))
    }

    fn kth_smallest(&self, k: usize, dim: usize) -> Result<(Tensor, Tensor)> {
        self.check_dim("kth_smallest", dim)?;
        let width = self.0.dims()[dim];
        if k == 0 || k > width {
            return Err(Error::shape("kth_smallest", format!("k = {k} must be in 1..={width}")));
        }
        let last = self.0.rank() - 1;
        let moved =
            if dim == last { self.0.clone() } else { self.0.transpose(dim, last).op("kth_smallest")? };
        let index = CandleTensor::new(moved.clone()).select_last_dim(k, false, false)?;
        let value = moved.contiguous().op("kth_smallest")?.gather(&index, last).op("kth_smallest")?;
        if dim == last {
            Ok((wrap(value)?, wrap(index)?))
        } else {
            let back = |t: CTensor| t.transpose(dim, last).op("kth_smallest");
            Ok((wrap(back(value)?)?, wrap(back(index)?)?))
        }
    }

    fn index_select(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        self.check_dim("index_select", dim)?;
        let idx = self.indices("index_select", indices)?;
        if idx.rank() != 1 {
            return Err(Error::shape(
                "index_select",
                format!("indices must be rank 1, got {:?}", idx.dims()),
            ));
        }
        let size = self.0.dims()[dim] as i64;
        // The bounds check reads the indices on the host: free on the CPU, a device sync
        // elsewhere, where the caller vouches for them (see `TensorImpl::index_select`).
        let checked =
            if self.0.device().is_cpu() { idx.to_vec1::<i64>().op("index_select")? } else { Vec::new() };
        if let Some(bad) = checked.into_iter().find(|&i| i < 0 || i >= size) {
            return Err(Error::shape(
                "index_select",
                format!("index {bad} out of range for dim {dim} of size {size}"),
            ));
        }
        // candle's CPU index_select reads contiguous storage only (a transpose was an error).
        wrap(self.0.contiguous().op("index_select")?.index_select(&idx, dim).op("index_select")?)
    }

    fn gather(&self, dim: usize, indices: &Tensor) -> Result<Tensor> {
        self.check_dim("gather", dim)?;
        let idx = self.indices("gather", indices)?;
        if idx.rank() != self.0.rank() {
            return Err(Error::shape(
                "gather",
                format!("indices {:?} must have the rank of {:?}", idx.dims(), self.0.dims()),
            ));
        }
        let size = self.0.dims()[dim] as i64;
        let flat = if self.0.device().is_cpu() {
            idx.flatten_all().op("gather")?.to_vec1::<i64>().op("gather")?
        } else {
            Vec::new()
        };
        if let Some(bad) = flat.into_iter().find(|&i| i < 0 || i >= size) {
            return Err(Error::shape(
                "gather",
                format!("index {bad} out of range for dim {dim} of size {size}"),
            ));
        }
        wrap(self.0.contiguous().op("gather")?.gather(&idx, dim).op("gather")?)
    }

    fn compare(&self, op: CmpOp, rhs: &Tensor) -> Result<Tensor> {
        let rhs = self.operand("compare", rhs)?;
        broadcast_shape("compare", self.0.dims(), rhs.dims())?;
        let rhs = rhs.to_dtype(self.0.dtype()).op("compare")?;
        let mask = match op {
            CmpOp::Eq => self.0.broadcast_eq(&rhs),
            CmpOp::Ne => self.0.broadcast_ne(&rhs),
            CmpOp::Lt => self.0.broadcast_lt(&rhs),
            CmpOp::Le => self.0.broadcast_le(&rhs),
            CmpOp::Gt => self.0.broadcast_gt(&rhs),
            CmpOp::Ge => self.0.broadcast_ge(&rhs),
        };
        wrap(mask.op("compare")?.to_dtype(CDType::F32).op("compare")?)
    }

    fn where_mask(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        let (t, f) = (self.operand("where_mask", on_true)?, self.operand("where_mask", on_false)?);
        let dims = broadcast_shape("where_mask", self.0.dims(), t.dims())?;
        let dims = broadcast_shape("where_mask", &dims, f.dims())?;
        let zero = self.0.zeros_like().op("where_mask")?;
        let mask = self.0.ne(&zero).op("where_mask")?.broadcast_as(dims.as_slice()).op("where_mask")?;
        let t = t.broadcast_as(dims.as_slice()).op("where_mask")?;
        let f = f.broadcast_as(dims.as_slice()).op("where_mask")?;
        wrap(mask.where_cond(&t, &f).op("where_mask")?)
    }

    fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        let target = match dtype {
            DType::F32 => CDType::F32,
            DType::I64 => CDType::I64,
        };
        wrap(self.0.to_dtype(target).op("to_dtype")?)
    }

    fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.0
            .flatten_all()
            .op("to_vec_f32")?
            .to_dtype(CDType::F32)
            .op("to_vec_f32")?
            .to_vec1()
            .op("to_vec_f32")
    }

    fn to_vec_i64(&self) -> Result<Vec<i64>> {
        self.0
            .flatten_all()
            .op("to_vec_i64")?
            .to_dtype(CDType::I64)
            .op("to_vec_i64")?
            .to_vec1()
            .op("to_vec_i64")
    }

    fn detach(&self) -> Result<Tensor> {
        wrap(self.0.detach())
    }

    fn gradients(&self, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
        let store = self.0.backward().op("gradients")?;
        wrt.iter()
            .map(|t| {
                let raw = self.operand("gradients", t)?;
                match store.get(raw) {
                    Some(grad) => wrap(grad.clone()),
                    None => wrap(raw.zeros_like().op("gradients")?),
                }
            })
            .collect()
    }
}
