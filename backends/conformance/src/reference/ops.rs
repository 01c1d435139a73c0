//! Naive-loop `f64` reference ops on [`HostTensor`]. Slow and obvious on purpose.

use hamos_api::{Error, Result};

use super::HostTensor;

/// The numpy broadcast of two shapes, or `None` when they are incompatible.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |d: &[usize], i: usize| {
        if i + d.len() >= rank {
            d[i + d.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

fn unravel(mut flat: usize, dims: &[usize]) -> Vec<usize> {
    let mut index = vec![0; dims.len()];
    for (slot, &d) in index.iter_mut().zip(dims).rev() {
        *slot = flat % d.max(1);
        flat /= d.max(1);
    }
    index
}

fn ravel(index: &[usize], dims: &[usize]) -> usize {
    index.iter().zip(dims).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// `(outer, len, inner)`: the tensor seen as `[outer, len, inner]` around `dim`.
fn split(dims: &[usize], dim: usize, op: &'static str) -> Result<(usize, usize, usize)> {
    if dim >= dims.len() {
        return Err(Error::shape(op, format!("reference: dim {dim} out of range for {dims:?}")));
    }
    Ok((dims[..dim].iter().product(), dims[dim], dims[dim + 1..].iter().product()))
}

fn index_of(i: i64, bound: usize, op: &'static str) -> Result<usize> {
    usize::try_from(i)
        .ok()
        .filter(|&i| i < bound)
        .ok_or_else(|| Error::shape(op, format!("reference: index {i} out of range 0..{bound}")))
}

impl HostTensor {
    /// Element-wise `f(x)`.
    pub fn map(&self, f: impl Fn(f64) -> f64) -> HostTensor {
        HostTensor { dims: self.dims.clone(), data: self.data.iter().map(|&v| f(v)).collect() }
    }

    /// Broadcasting element-wise `f(self, other)`.
    pub fn zip(&self, other: &HostTensor, f: impl Fn(f64, f64) -> f64) -> Result<HostTensor> {
        let dims = broadcast_shape(&self.dims, &other.dims)
            .ok_or_else(|| Error::shape("zip", format!("reference: {:?} vs {:?}", self.dims, other.dims)))?;
        let (a, b) = (self.broadcast_as(&dims)?, other.broadcast_as(&dims)?);
        let data = a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect();
        Ok(HostTensor { dims, data })
    }

    /// Expands size-1 dims (and prepends dims) to `dims`.
    pub fn broadcast_as(&self, dims: &[usize]) -> Result<HostTensor> {
        let lead = dims
            .len()
            .checked_sub(self.dims.len())
            .ok_or_else(|| Error::shape("broadcast_as", format!("reference: {:?} to {dims:?}", self.dims)))?;
        for (i, &d) in self.dims.iter().enumerate() {
            if d != 1 && d != dims[lead + i] {
                return Err(Error::shape("broadcast_as", format!("reference: {:?} to {dims:?}", self.dims)));
            }
        }
        let count: usize = dims.iter().product();
        let data = (0..count)
            .map(|flat| {
                let index = unravel(flat, dims);
                let src: Vec<usize> = self
                    .dims
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if d == 1 { 0 } else { index[lead + i] })
                    .collect();
                self.data[ravel(&src, &self.dims)]
            })
            .collect();
        Ok(HostTensor { dims: dims.to_vec(), data })
    }

    /// Same data, new shape.
    pub fn reshape(&self, dims: &[usize]) -> Result<HostTensor> {
        HostTensor::new(dims, self.data.clone())
    }

    /// Swaps two dims.
    pub fn transpose(&self, d0: usize, d1: usize) -> Result<HostTensor> {
        if d0 >= self.dims.len() || d1 >= self.dims.len() {
            return Err(Error::shape("transpose", format!("reference: {:?}", self.dims)));
        }
        let mut dims = self.dims.clone();
        dims.swap(d0, d1);
        let data = (0..self.data.len())
            .map(|flat| {
                let mut index = unravel(flat, &dims);
                index.swap(d0, d1);
                self.data[ravel(&index, &self.dims)]
            })
            .collect();
        Ok(HostTensor { dims, data })
    }

    /// The slice `start..start + len` along `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<HostTensor> {
        let picks: Vec<i64> = (start..start + len).map(|i| i as i64).collect();
        self.index_select(dim, &picks)
    }

    /// Concatenation along `dim`.
    pub fn cat(parts: &[&HostTensor], dim: usize) -> Result<HostTensor> {
        let first = parts.first().ok_or_else(|| Error::shape("cat", "reference: no parts"))?;
        let (outer, _, inner) = split(&first.dims, dim, "cat")?;
        let mut dims = first.dims.clone();
        dims[dim] = parts.iter().map(|p| p.dims.get(dim).copied().unwrap_or(0)).sum();
        let mut data = Vec::with_capacity(dims.iter().product());
        for o in 0..outer {
            for p in parts {
                let chunk = p.dims[dim] * inner;
                data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
            }
        }
        HostTensor::new(&dims, data)
    }

    fn along(
        &self,
        dim: usize,
        keepdim: bool,
        op: &'static str,
        f: impl Fn(&[f64]) -> f64,
    ) -> Result<HostTensor> {
        let (outer, len, inner) = split(&self.dims, dim, op)?;
        let mut data = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for r in 0..inner {
                let line: Vec<f64> = (0..len).map(|i| self.data[(o * len + i) * inner + r]).collect();
                data.push(f(&line));
            }
        }
        let mut dims = self.dims.clone();
        if keepdim {
            dims[dim] = 1;
        } else {
            dims.remove(dim);
        }
        HostTensor::new(&dims, data)
    }

    /// Sum along `dim`.
    pub fn sum(&self, dim: usize, keepdim: bool) -> Result<HostTensor> {
        self.along(dim, keepdim, "sum", |l| l.iter().sum())
    }

    /// Maximum along `dim`.
    pub fn max(&self, dim: usize, keepdim: bool) -> Result<HostTensor> {
        self.along(dim, keepdim, "max", |l| l.iter().copied().fold(f64::NEG_INFINITY, f64::max))
    }

    /// Minimum along `dim`.
    pub fn min(&self, dim: usize, keepdim: bool) -> Result<HostTensor> {
        self.along(dim, keepdim, "min", |l| l.iter().copied().fold(f64::INFINITY, f64::min))
    }

    /// Index of the first maximum along `dim`, as `f64` values of the indices.
    pub fn argmax(&self, dim: usize, keepdim: bool) -> Result<HostTensor> {
        self.along(dim, keepdim, "argmax", |l| {
            let mut best = 0;
            for (i, &v) in l.iter().enumerate() {
                if v > l[best] {
                    best = i;
                }
            }
            best as f64
        })
    }

    /// `log(sum(exp(x)))` along `dim`, computed stably.
    pub fn logsumexp(&self, dim: usize, keepdim: bool) -> Result<HostTensor> {
        self.along(dim, keepdim, "logsumexp", |l| {
            let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
        })
    }

    /// Sum of all elements, shape `[1]`.
    pub fn sum_all(&self) -> HostTensor {
        HostTensor { dims: vec![1], data: vec![self.data.iter().sum()] }
    }

    /// Unit Euclidean norm along `dim` (norm floored at 1e-12).
    pub fn l2_normalize(&self, dim: usize) -> Result<HostTensor> {
        let norm = self.map(|v| v * v).sum(dim, true)?.map(|v| v.sqrt().max(1e-12));
        self.zip(&norm, |x, n| x / n)
    }

    /// Matrix product of the last two dims, batched over equal leading dims.
    pub fn matmul(&self, rhs: &HostTensor) -> Result<HostTensor> {
        let (ra, rb) = (self.dims.len(), rhs.dims.len());
        let bad = || Error::shape("matmul", format!("reference: {:?} x {:?}", self.dims, rhs.dims));
        if ra < 2
            || ra != rb
            || self.dims[..ra - 2] != rhs.dims[..rb - 2]
            || self.dims[ra - 1] != rhs.dims[rb - 2]
        {
            return Err(bad());
        }
        let (m, k, n) = (self.dims[ra - 2], self.dims[ra - 1], rhs.dims[rb - 1]);
        let batch: usize = self.dims[..ra - 2].iter().product();
        let mut data = vec![0.0; batch * m * n];
        for b in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    data[(b * m + i) * n + j] =
                        (0..k).map(|p| self.data[(b * m + i) * k + p] * rhs.data[(b * k + p) * n + j]).sum();
                }
            }
        }
        let mut dims = self.dims.clone();
        dims[ra - 1] = n;
        HostTensor::new(&dims, data)
    }

    /// Squared distances between the rows of `self` `[m, d]` and `other` `[n, d]`.
    pub fn pairwise_sq_dists(&self, other: &HostTensor) -> Result<HostTensor> {
        let (m, d) = (self.dims[0], self.dims[1]);
        let n = other.dims[0];
        let data = (0..m * n)
            .map(|ij| {
                let (i, j) = (ij / n, ij % n);
                (0..d).map(|p| (self.data[i * d + p] - other.data[j * d + p]).powi(2)).sum()
            })
            .collect();
        HostTensor::new(&[m, n], data)
    }

    /// The `k` largest (or smallest) along `dim`, sorted, and their indices (ties: lower index
    /// first).
    pub fn topk(&self, k: usize, dim: usize, largest: bool) -> Result<(HostTensor, Vec<i64>)> {
        let (outer, len, inner) = split(&self.dims, dim, "topk")?;
        if k > len {
            return Err(Error::shape("topk", format!("reference: k {k} > {len}")));
        }
        let mut dims = self.dims.clone();
        dims[dim] = k;
        let count: usize = dims.iter().product();
        let (mut values, mut indices) = (vec![0.0; count], vec![0; count]);
        for o in 0..outer {
            for r in 0..inner {
                let mut line: Vec<(usize, f64)> =
                    (0..len).map(|i| (i, self.data[(o * len + i) * inner + r])).collect();
                line.sort_by(|a, b| {
                    let order = a.1.total_cmp(&b.1);
                    (if largest { order.reverse() } else { order }).then(a.0.cmp(&b.0))
                });
                for (j, &(i, v)) in line.iter().take(k).enumerate() {
                    values[(o * k + j) * inner + r] = v;
                    indices[(o * k + j) * inner + r] = i as i64;
                }
            }
        }
        Ok((HostTensor::new(&dims, values)?, indices))
    }

    /// Picks the slices `indices` along `dim`.
    pub fn index_select(&self, dim: usize, indices: &[i64]) -> Result<HostTensor> {
        let (outer, len, inner) = split(&self.dims, dim, "index_select")?;
        let mut dims = self.dims.clone();
        dims[dim] = indices.len();
        let mut data = Vec::with_capacity(dims.iter().product());
        for o in 0..outer {
            for &i in indices {
                let i = index_of(i, len, "index_select")?;
                let start = (o * len + i) * inner;
                data.extend_from_slice(&self.data[start..start + inner]);
            }
        }
        HostTensor::new(&dims, data)
    }

    /// `out[.., j, ..] = self[.., indices[.., j, ..], ..]` along `dim`; `indices` has shape
    /// `index_dims` (the rank of `self`, other dims equal).
    pub fn gather(&self, dim: usize, indices: &[i64], index_dims: &[usize]) -> Result<HostTensor> {
        let (_, len, _) = split(&self.dims, dim, "gather")?;
        let data = (0..indices.len())
            .map(|flat| {
                let mut index = unravel(flat, index_dims);
                index[dim] = index_of(indices[flat], len, "gather")?;
                Ok(self.data[ravel(&index, &self.dims)])
            })
            .collect::<Result<Vec<f64>>>()?;
        HostTensor::new(index_dims, data)
    }

    /// `self` as a mask: `on_true` where non-zero, else `on_false`, all broadcasting.
    pub fn where_mask(&self, on_true: &HostTensor, on_false: &HostTensor) -> Result<HostTensor> {
        let dims = broadcast_shape(&self.dims, &on_true.dims)
            .and_then(|d| broadcast_shape(&d, &on_false.dims))
            .ok_or_else(|| Error::shape("where_mask", "reference: shapes do not broadcast"))?;
        let (m, t, f) =
            (self.broadcast_as(&dims)?, on_true.broadcast_as(&dims)?, on_false.broadcast_as(&dims)?);
        let data = (0..m.data.len()).map(|i| if m.data[i] != 0.0 { t.data[i] } else { f.data[i] }).collect();
        HostTensor::new(&dims, data)
    }
}
