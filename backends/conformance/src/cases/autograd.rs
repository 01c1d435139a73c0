//! Gradients of element-wise ops, reductions and `matmul`, against finite differences of the
//! `f64` host reference (see [`crate::gradcheck`]).

use std::sync::Arc;

use hamos_api::{Backend, BinaryOp, Result, Tensor};

use crate::gradcheck::{check_gradients, check_unary_gradient, GRAD_TOL};
use crate::reference::{HostTensor, Inputs};

const BROADCASTS: [(&[usize], &[usize]); 5] =
    [(&[3, 4], &[3, 4]), (&[3, 4], &[4]), (&[3, 1], &[1, 4]), (&[2, 3, 4], &[3, 1]), (&[1], &[2, 3])];

fn binary_grad(backend: &Arc<dyn Backend>, op: BinaryOp, seed: u64) -> Result<()> {
    let mut inputs = Inputs::new(seed);
    for (da, db) in BROADCASTS {
        let a = inputs.normal(da);
        let b = if op == BinaryOp::Div { inputs.positive(db) } else { inputs.normal(db) };
        let host: fn(f64, f64) -> f64 = match op {
            BinaryOp::Add => |x, y| x + y,
            BinaryOp::Sub => |x, y| x - y,
            BinaryOp::Mul => |x, y| x * y,
            BinaryOp::Div => |x, y| x / y,
            BinaryOp::Maximum => f64::max,
            BinaryOp::Minimum => f64::min,
        };
        check_gradients(
            backend,
            &format!("d {op:?} {da:?} with {db:?}"),
            &[a, b],
            |x| x[0].inner().binary(op, &x[1]),
            |x| x[0].zip(&x[1], host),
            GRAD_TOL,
        )?;
    }
    Ok(())
}

/// Gradients of `add` wrt both operands, with broadcasting (summed over broadcast dims).
pub fn grad_add(backend: &Arc<dyn Backend>) -> Result<()> {
    binary_grad(backend, BinaryOp::Add, 801)
}

/// Gradients of `sub` wrt both operands, with broadcasting.
pub fn grad_sub(backend: &Arc<dyn Backend>) -> Result<()> {
    binary_grad(backend, BinaryOp::Sub, 802)
}

/// Gradients of `mul` wrt both operands, with broadcasting.
pub fn grad_mul(backend: &Arc<dyn Backend>) -> Result<()> {
    binary_grad(backend, BinaryOp::Mul, 803)
}

/// Gradients of `div` wrt numerator and (positive) denominator, with broadcasting.
pub fn grad_div(backend: &Arc<dyn Backend>) -> Result<()> {
    binary_grad(backend, BinaryOp::Div, 804)
}

/// Gradients of `maximum` and `minimum` (random operands, so no ties).
pub fn grad_maximum_minimum(backend: &Arc<dyn Backend>) -> Result<()> {
    binary_grad(backend, BinaryOp::Maximum, 805)?;
    binary_grad(backend, BinaryOp::Minimum, 806)
}

fn unary_grad(
    backend: &Arc<dyn Backend>,
    op: &str,
    x: &HostTensor,
    on_backend: fn(&Tensor) -> Result<Tensor>,
    on_host: fn(f64) -> f64,
) -> Result<()> {
    check_unary_gradient(backend, op, x, on_backend, |h| Ok(h.map(on_host)))
}

/// Gradient of `exp`.
pub fn grad_exp(backend: &Arc<dyn Backend>) -> Result<()> {
    unary_grad(backend, "d exp", &Inputs::new(811).normal(&[3, 4]), Tensor::exp, f64::exp)
}

/// Gradient of `log` (positive inputs).
pub fn grad_log(backend: &Arc<dyn Backend>) -> Result<()> {
    unary_grad(backend, "d log", &Inputs::new(812).positive(&[3, 4]), Tensor::log, f64::ln)
}

/// Gradient of `sqrt` (positive inputs).
pub fn grad_sqrt(backend: &Arc<dyn Backend>) -> Result<()> {
    unary_grad(backend, "d sqrt", &Inputs::new(813).positive(&[3, 4]), Tensor::sqrt, f64::sqrt)
}

/// Gradients of `cos` and `sin`.
pub fn grad_cos_sin(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(814).uniform(&[3, 4], -3.0, 3.0);
    unary_grad(backend, "d cos", &x, Tensor::cos, f64::cos)?;
    unary_grad(backend, "d sin", &x, Tensor::sin, f64::sin)
}

/// Gradient of `tanh`.
pub fn grad_tanh(backend: &Arc<dyn Backend>) -> Result<()> {
    unary_grad(backend, "d tanh", &Inputs::new(815).normal(&[3, 4]), Tensor::tanh, f64::tanh)
}

/// Gradients of `abs` and `relu` (inputs at least 0.05 away from the kink at 0).
pub fn grad_abs_relu(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(816).normal(&[4, 5]);
    unary_grad(backend, "d abs", &x, Tensor::abs, f64::abs)?;
    unary_grad(backend, "d relu", &x, Tensor::relu, |v| v.max(0.0))
}

/// Gradients of `affine`, `scale`, `add_scalar`, `neg` and `sqr`.
pub fn grad_affine(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(817).normal(&[3, 4]);
    unary_grad(backend, "d affine(1.5, -0.3)", &x, |t| t.affine(1.5, -0.3), |v| 1.5 * v - 0.3)?;
    unary_grad(backend, "d scale(-0.7)", &x, |t| t.scale(-0.7), |v| -0.7 * v)?;
    unary_grad(backend, "d add_scalar(2)", &x, |t| t.add_scalar(2.0), |v| v + 2.0)?;
    unary_grad(backend, "d neg", &x, Tensor::neg, |v| -v)?;
    unary_grad(backend, "d sqr", &x, Tensor::sqr, |v| v * v)
}

/// Gradient of `clamp`: 1 inside the range, 0 outside (inputs kept away from the bounds).
pub fn grad_clamp(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(818)
        .normal(&[4, 5])
        .map(|v| {
            let near = |b: f64| (v - b).abs() < 0.05;
            if near(-0.5) || near(0.7) {
                v + 0.1
            } else {
                v
            }
        })
        .round_f32();
    unary_grad(backend, "d clamp(-0.5, 0.7)", &x, |t| t.clamp(-0.5, 0.7), |v| v.clamp(-0.5, 0.7))?;
    unary_grad(backend, "d clamp(0, inf)", &x, |t| t.clamp(0.0, f64::INFINITY), |v| v.max(0.0))
}

/// Gradient of `sum` along each dim, both `keepdim`s.
pub fn grad_sum(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(821).normal(&[2, 3, 4]);
    for dim in 0..3 {
        for keepdim in [true, false] {
            check_unary_gradient(
                backend,
                &format!("d sum(dim {dim}, keepdim {keepdim})"),
                &x,
                |t| t.sum(dim, keepdim),
                |h| h.sum(dim, keepdim),
            )?;
        }
    }
    Ok(())
}

/// Gradients of `max` and `min` along each dim (distinct values): all to the arg-extremum.
pub fn grad_max_min(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(822).distinct(&[3, 4, 5]);
    for dim in 0..3 {
        for keepdim in [true, false] {
            let name = format!("dim {dim}, keepdim {keepdim}");
            check_unary_gradient(
                backend,
                &format!("d max({name})"),
                &x,
                |t| t.max(dim, keepdim),
                |h| h.max(dim, keepdim),
            )?;
            check_unary_gradient(
                backend,
                &format!("d min({name})"),
                &x,
                |t| t.min(dim, keepdim),
                |h| h.min(dim, keepdim),
            )?;
        }
    }
    Ok(())
}

/// Gradients of `mean`, `sum_all` and `mean_all`.
pub fn grad_mean(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(823).normal(&[3, 4]);
    check_unary_gradient(
        backend,
        "d mean(dim 1)",
        &x,
        |t| t.mean(1, false),
        |h| Ok(h.sum(1, false)?.map(|v| v / 4.0)),
    )?;
    check_unary_gradient(backend, "d sum_all", &x, Tensor::sum_all, |h| Ok(h.sum_all()))?;
    check_unary_gradient(backend, "d mean_all", &x, Tensor::mean_all, |h| Ok(h.sum_all().map(|v| v / 12.0)))
}

/// Gradients of 2-D and batched `matmul` wrt both operands.
pub fn grad_matmul(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(824);
    let shapes: [(&[usize], &[usize]); 3] =
        [(&[3, 4], &[4, 2]), (&[2, 3, 4], &[2, 4, 5]), (&[1, 5], &[5, 3])];
    for (da, db) in shapes {
        let (a, b) = (inputs.normal(da), inputs.normal(db));
        check_gradients(
            backend,
            &format!("d matmul {da:?} x {db:?}"),
            &[a, b],
            |x| x[0].matmul(&x[1]),
            |x| x[0].matmul(&x[1]),
            GRAD_TOL,
        )?;
    }
    Ok(())
}
