//! Naive-loop `f64` references for the network ops of [`hamos_api::ModuleOps`]: convolution and
//! pooling in PyTorch's semantics (cross-correlation, zero padding, floor-mode output sizes).
//!
//! Output sizes are computed here from scratch rather than with [`hamos_api::Window`], so a
//! mistake in the shared window arithmetic shows up as a shape mismatch instead of being copied.

use hamos_api::{Error, Result};

use super::HostTensor;

/// Output size along one spatial dim of `size`, or an error when the window does not fit.
fn out_size(op: &'static str, size: usize, kernel: usize, stride: usize, padding: usize) -> Result<usize> {
    let padded = size + 2 * padding;
    if kernel == 0 || stride == 0 || kernel > padded {
        return Err(Error::shape(
            op,
            format!("reference: kernel {kernel}, stride {stride}, padding {padding} on size {size}"),
        ));
    }
    Ok((padded - kernel) / stride + 1)
}

/// The four dims of an `[n, c, h, w]` tensor.
fn dims4(op: &'static str, t: &HostTensor) -> Result<[usize; 4]> {
    match t.dims[..] {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(Error::shape(op, format!("reference: {:?} is not rank 4", t.dims))),
    }
}

/// Pooling windows of an `[n, c, h, w]` tensor: the output dims, and for each output element
/// (row-major) the flat input index of each window cell, `None` where the cell is padding.
type Windows = (Vec<usize>, Vec<Vec<Option<usize>>>);

impl HostTensor {
    /// 2-D cross-correlation of `self` `[n, c_in, h, w]` with `weight` `[c_out, c_in, k, k]`,
    /// plus `bias` `[c_out]`, with `stride` and `padding` zeros on each side.
    pub fn conv2d(
        &self,
        weight: &HostTensor,
        bias: Option<&HostTensor>,
        stride: usize,
        padding: usize,
    ) -> Result<HostTensor> {
        const OP: &str = "conv2d";
        let [n, c_in, h, w] = dims4(OP, self)?;
        let [c_out, wc, kh, kw] = dims4(OP, weight)?;
        if wc != c_in || kh != kw || bias.is_some_and(|b| b.dims != [c_out]) {
            return Err(Error::shape(
                OP,
                format!("reference: {:?} with weight {:?}", self.dims, weight.dims),
            ));
        }
        let (oh, ow) = (out_size(OP, h, kh, stride, padding)?, out_size(OP, w, kw, stride, padding)?);
        let mut data = Vec::with_capacity(n * c_out * oh * ow);
        for b in 0..n {
            for co in 0..c_out {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias.map_or(0.0, |bias| bias.data[co]);
                        for ci in 0..c_in {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    // Padding cells are zero and add nothing.
                                    let Some((y, x)) =
                                        unpad(oy * stride + ky, ox * stride + kx, padding, h, w)
                                    else {
                                        continue;
                                    };
                                    acc += self.data[((b * c_in + ci) * h + y) * w + x]
                                        * weight.data[((co * c_in + ci) * kh + ky) * kw + kx];
                                }
                            }
                        }
                        data.push(acc);
                    }
                }
            }
        }
        HostTensor::new(&[n, c_out, oh, ow], data)
    }

    fn pool_windows(
        &self,
        op: &'static str,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Windows> {
        let [n, c, h, w] = dims4(op, self)?;
        let (oh, ow) = (out_size(op, h, kernel, stride, padding)?, out_size(op, w, kernel, stride, padding)?);
        let mut windows = Vec::with_capacity(n * c * oh * ow);
        for plane in 0..n * c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let cells = (0..kernel * kernel)
                        .map(|cell| {
                            unpad(oy * stride + cell / kernel, ox * stride + cell % kernel, padding, h, w)
                                .map(|(y, x)| (plane * h + y) * w + x)
                        })
                        .collect();
                    windows.push(cells);
                }
            }
        }
        Ok((vec![n, c, oh, ow], windows))
    }

    /// Maximum over each `kernel` x `kernel` window of `self` `[n, c, h, w]`; padding cells count
    /// as minus infinity.
    pub fn max_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<HostTensor> {
        let (dims, windows) = self.pool_windows("max_pool2d", kernel, stride, padding)?;
        let data = windows
            .iter()
            .map(|cells| cells.iter().flatten().map(|&i| self.data[i]).fold(f64::NEG_INFINITY, f64::max))
            .collect();
        HostTensor::new(&dims, data)
    }

    /// Mean over each `kernel` x `kernel` window of `self` `[n, c, h, w]`; padding cells count as
    /// zeros in the mean (PyTorch's `count_include_pad = true`).
    pub fn avg_pool2d(&self, kernel: usize, stride: usize, padding: usize) -> Result<HostTensor> {
        let (dims, windows) = self.pool_windows("avg_pool2d", kernel, stride, padding)?;
        let area = (kernel * kernel) as f64;
        let data =
            windows.iter().map(|cells| cells.iter().flatten().map(|&i| self.data[i]).sum::<f64>() / area);
        HostTensor::new(&dims, data.collect())
    }

    /// The gradient of `sum(max_pool2d(self) * grad_out)` with respect to `self`: each window
    /// sends its `grad_out` entry to its argmax, summed where windows overlap. Finite differences
    /// are unreliable where a perturbation can switch the argmax, so this is the analytic form; a
    /// window with a tied maximum is an error (the gradient would depend on the tie-break).
    pub fn max_pool2d_backward(
        &self,
        grad_out: &HostTensor,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<HostTensor> {
        const OP: &str = "max_pool2d_backward";
        let (dims, windows) = self.pool_windows(OP, kernel, stride, padding)?;
        if grad_out.dims != dims {
            return Err(Error::shape(
                OP,
                format!("reference: grad_out {:?}, output {dims:?}", grad_out.dims),
            ));
        }
        let mut grad = vec![0.0; self.data.len()];
        for (cells, &g) in windows.iter().zip(&grad_out.data) {
            let mut real = cells.iter().flatten().copied();
            let Some(first) = real.next() else { continue };
            let (mut best, mut tied) = (first, false);
            for i in real {
                if self.data[i] > self.data[best] {
                    (best, tied) = (i, false);
                } else if self.data[i] == self.data[best] {
                    tied = true;
                }
            }
            if tied {
                return Err(Error::Data(format!(
                    "{OP}: reference: tied maximum {} in a window",
                    self.data[best]
                )));
            }
            grad[best] += g;
        }
        HostTensor::new(&self.dims, grad)
    }

    /// Mean over the spatial dims: `[n, c, h, w]` -> `[n, c]`.
    pub fn global_avg_pool2d(&self) -> Result<HostTensor> {
        let [n, c, h, w] = dims4("global_avg_pool2d", self)?;
        let area = h * w;
        let data = (0..n * c).map(|p| self.data[p * area..(p + 1) * area].iter().sum::<f64>() / area as f64);
        HostTensor::new(&[n, c], data.collect())
    }
}

/// Position `(y, x)` in the padded input as a position in the unpadded `h` x `w` input, or
/// `None` when it falls in the padding.
fn unpad(y: usize, x: usize, padding: usize, h: usize, w: usize) -> Option<(usize, usize)> {
    let (y, x) = (y.checked_sub(padding)?, x.checked_sub(padding)?);
    (y < h && x < w).then_some((y, x))
}
