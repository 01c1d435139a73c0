//! Element-wise ops: broadcasting binary ops, unary ops, `affine`, `clamp` and the scalar
//! shorthands built on them.

use std::sync::Arc;

use hamos_api::{Backend, BinaryOp, Result, Tensor, UnaryOp};

use crate::reference::{assert_tensor, HostTensor, Inputs};

const TOL: f64 = 1e-5;

fn binary_ref(op: BinaryOp) -> fn(f64, f64) -> f64 {
    match op {
        BinaryOp::Add => |a, b| a + b,
        BinaryOp::Sub => |a, b| a - b,
        BinaryOp::Mul => |a, b| a * b,
        BinaryOp::Div => |a, b| a / b,
        BinaryOp::Maximum => f64::max,
        BinaryOp::Minimum => f64::min,
    }
}

fn binary_on(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match op {
        BinaryOp::Add => a.add(b),
        BinaryOp::Sub => a.sub(b),
        BinaryOp::Mul => a.mul(b),
        BinaryOp::Div => a.div(b),
        BinaryOp::Maximum => a.maximum(b),
        BinaryOp::Minimum => a.minimum(b),
    }
}

const BINARY: [BinaryOp; 6] =
    [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Maximum, BinaryOp::Minimum];

fn check_binary(backend: &Arc<dyn Backend>, inputs: &mut Inputs, lhs: &[usize], rhs: &[usize]) -> Result<()> {
    for op in BINARY {
        let a = inputs.normal(lhs);
        // Denominators stay away from zero; the other ops see signed values.
        let b = if op == BinaryOp::Div { inputs.positive(rhs) } else { inputs.normal(rhs) };
        let (ta, tb) = (a.upload(backend)?, b.upload(backend)?);
        let want = a.zip(&b, binary_ref(op))?;
        assert_tensor(&format!("{op:?} {lhs:?} with {rhs:?}"), &binary_on(op, &ta, &tb)?, &want, TOL)?;
        let via_inner = ta.inner().binary(op, &tb)?;
        assert_tensor(&format!("TensorImpl::binary {op:?} {lhs:?} with {rhs:?}"), &via_inner, &want, TOL)?;
    }
    Ok(())
}

/// The six binary ops on equal shapes.
pub fn binary_same_shape(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(301);
    check_binary(backend, &mut inputs, &[3, 4], &[3, 4])?;
    check_binary(backend, &mut inputs, &[2, 3, 4], &[2, 3, 4])?;
    check_binary(backend, &mut inputs, &[5], &[5])
}

/// The six binary ops with numpy broadcasting on either side.
pub fn binary_broadcast(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(302);
    let pairs: [(&[usize], &[usize]); 8] = [
        (&[3, 1], &[1, 4]),
        (&[2, 3, 4], &[4]),
        (&[4], &[2, 3, 4]),
        (&[2, 3, 4], &[3, 1]),
        (&[1], &[2, 3]),
        (&[2, 3], &[1]),
        (&[2, 1, 4], &[1, 3, 1]),
        (&[3, 4], &[2, 1, 4]),
    ];
    for (lhs, rhs) in pairs {
        check_binary(backend, &mut inputs, lhs, rhs)?;
    }
    Ok(())
}

type UnaryCase = (UnaryOp, fn(f64) -> f64, fn(&Tensor) -> Result<Tensor>);

/// Every unary op, with positive inputs for `log` and `sqrt`.
pub fn unary_ops(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(303);
    let ops: [UnaryCase; 8] = [
        (UnaryOp::Exp, f64::exp, Tensor::exp),
        (UnaryOp::Log, f64::ln, Tensor::log),
        (UnaryOp::Sqrt, f64::sqrt, Tensor::sqrt),
        (UnaryOp::Cos, f64::cos, Tensor::cos),
        (UnaryOp::Sin, f64::sin, Tensor::sin),
        (UnaryOp::Abs, f64::abs, Tensor::abs),
        (UnaryOp::Relu, |v| v.max(0.0), Tensor::relu),
        (UnaryOp::Tanh, f64::tanh, Tensor::tanh),
    ];
    for (op, host_op, backend_op) in ops {
        let x = match op {
            UnaryOp::Log | UnaryOp::Sqrt => inputs.uniform(&[3, 4], 0.01, 10.0),
            _ => inputs.uniform(&[3, 4], -3.0, 3.0),
        };
        let tx = x.upload(backend)?;
        assert_tensor(&format!("{op:?}"), &backend_op(&tx)?, &x.map(host_op), TOL)?;
        assert_tensor(&format!("TensorImpl::unary {op:?}"), &tx.inner().unary(op)?, &x.map(host_op), TOL)?;
    }
    let big = HostTensor::new(&[4], vec![-20.0, 20.0, 1e-3, 80.0])?;
    assert_tensor("tanh saturates", &big.upload(backend)?.tanh()?, &big.map(f64::tanh), TOL)?;
    let small = HostTensor::new(&[3], vec![-100.0, -20.0, 10.0])?;
    assert_tensor("exp of large negatives", &small.upload(backend)?.exp()?, &small.map(f64::exp), TOL)
}

/// `affine` and the shorthands `scale`, `add_scalar`, `neg`, `sqr`.
pub fn affine_and_scalars(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(304).normal(&[2, 3, 4]);
    let tx = x.upload(backend)?;
    assert_tensor("affine(1.5, -0.3)", &tx.affine(1.5, -0.3)?, &x.map(|v| v * 1.5 - 0.3), TOL)?;
    assert_tensor("affine(-2, 0.25)", &tx.affine(-2.0, 0.25)?, &x.map(|v| -2.0 * v + 0.25), TOL)?;
    assert_tensor("scale(0.1)", &tx.scale(0.1)?, &x.map(|v| v * 0.1), TOL)?;
    assert_tensor("add_scalar(3.5)", &tx.add_scalar(3.5)?, &x.map(|v| v + 3.5), TOL)?;
    assert_tensor("neg", &tx.neg()?, &x.map(|v| -v), 0.0)?;
    assert_tensor("sqr", &tx.sqr()?, &x.map(|v| v * v), TOL)
}

/// `clamp` to a finite and to a half-infinite range.
pub fn clamp(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(305).normal(&[4, 5]);
    let tx = x.upload(backend)?;
    assert_tensor("clamp(-0.5, 0.7)", &tx.clamp(-0.5, 0.7)?, &x.map(|v| v.clamp(-0.5, 0.7)), 1e-6)?;
    assert_tensor("clamp(0, inf)", &tx.clamp(0.0, f64::INFINITY)?, &x.map(|v| v.max(0.0)), 1e-6)?;
    assert_tensor("clamp(-inf, 0.2)", &tx.clamp(f64::NEG_INFINITY, 0.2)?, &x.map(|v| v.min(0.2)), 1e-6)
}
