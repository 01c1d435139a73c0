//! Autograd semantics beyond single ops: zeros for unused variables, no accumulation across
//! calls, `detach`, and a small model trained with gradients written only against `Tensor`.

use std::sync::Arc;

use hamos_api::{Backend, Result, Tensor};

use crate::reference::{assert_close, assert_tensor, ensure, HostTensor, Inputs};

/// The gradient wrt a variable the loss does not depend on is zeros of its shape.
pub fn grad_unused_variable_is_zero(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1001);
    let (x, y, w) = (inputs.normal(&[3, 4]), inputs.normal(&[2, 5]), inputs.normal(&[3, 4]));
    let (vx, vy) = (x.variable(backend)?, y.variable(backend)?);
    let loss = vx.mul(&w.upload(backend)?)?.sum_all()?;
    let grads = loss.gradients(&[&vx, &vy])?;
    ensure(grads.len() == 2, "gradients", || format!("{} gradients for 2 variables", grads.len()))?;
    assert_tensor("gradient wrt the used variable", &grads[0], &w, 1e-6)?;
    let zeros = HostTensor::new(&[2, 5], vec![0.0; 10])?;
    assert_tensor("gradient wrt an unused variable", &grads[1], &zeros, 0.0)?;
    let only = loss.gradients(&[&vy])?;
    ensure(only.len() == 1, "gradients", || format!("{} gradients for 1 variable", only.len()))?;
    assert_tensor("gradient wrt only an unused variable", &only[0], &zeros, 0.0)
}

/// Calling `gradients` twice (on one loss, and on a second loss of the same variable) gives the
/// same values: nothing accumulates between calls.
pub fn grad_no_accumulation(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1002);
    let (x, w) = (inputs.normal(&[3, 4]), inputs.normal(&[3, 4]));
    let vx = x.variable(backend)?;
    let tw = w.upload(backend)?;
    let loss = vx.sqr()?.mul(&tw)?.sum_all()?;
    let want = x.zip(&w, |a, b| 2.0 * a * b)?;
    let first = loss.gradients(&[&vx])?;
    let second = loss.gradients(&[&vx])?;
    assert_tensor("first gradients call", &first[0], &want, 1e-5)?;
    assert_tensor("second gradients call on the same loss", &second[0], &want, 1e-5)?;
    let again = vx.sqr()?.mul(&tw)?.sum_all()?.gradients(&[&vx])?;
    assert_tensor("gradients of a rebuilt loss", &again[0], &want, 1e-5)
}

/// `detach` cuts the graph: `sum(detach(x) * x)` has gradient `x`, not `2x`; a detached copy has
/// the same values.
pub fn grad_detach_blocks(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(1003).normal(&[2, 3]);
    let vx = x.variable(backend)?;
    let d = vx.detach()?;
    assert_tensor("detach keeps values", &d, &x, 0.0)?;
    let loss = d.mul(&vx)?.sum_all()?;
    assert_tensor("gradient through detach(x) * x", &loss.gradients(&[&vx])?[0], &x, 1e-6)
}

/// A variable used in several branches gets the sum of their gradients.
pub fn grad_reused_variable(backend: &Arc<dyn Backend>) -> Result<()> {
    let x = Inputs::new(1004).normal(&[2, 3]);
    let vx = x.variable(backend)?;
    // loss = sum(x * x + exp(x) + 3 x)  =>  dloss/dx = 2x + exp(x) + 3
    let loss = vx.mul(&vx)?.add(&vx.exp()?)?.add(&vx.scale(3.0)?)?.sum_all()?;
    let want = x.map(|v| 2.0 * v + v.exp() + 3.0);
    assert_tensor("gradient of a variable used in three branches", &loss.gradients(&[&vx])?[0], &want, 1e-5)
}

/// Plain gradient descent on a linear regression, written only against `Tensor` ops, drives the
/// loss from about 6 to the noise floor and recovers the weights: losses written once train on
/// this backend.
pub fn linear_regression_trains(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(1005);
    let (true_w, true_b) = ([1.5, -2.0, 0.5], 0.3);
    let x = inputs.normal(&[64, 3]);
    let noise = inputs.normal(&[64, 1]).map(|v| 0.01 * v);
    let y = x.matmul(&HostTensor::new(&[3, 1], true_w.to_vec())?)?.zip(&noise, |p, n| p + n + true_b)?;
    let (tx, ty) = (x.upload(backend)?, y.upload(backend)?);
    let loss_of = |w: &Tensor, b: &Tensor| tx.matmul(w)?.add(b)?.sub(&ty)?.sqr()?.mean_all();

    let mut w = backend.variable(&backend.zeros(&[3, 1])?)?;
    let mut b = backend.variable(&backend.zeros(&[1])?)?;
    let initial = loss_of(&w, &b)?.to_scalar_f32()?;
    for _ in 0..150 {
        let loss = loss_of(&w, &b)?;
        let grads = loss.gradients(&[&w, &b])?;
        ensure(grads.len() == 2, "gradients", || format!("{} gradients for 2 variables", grads.len()))?;
        w = backend.variable(&w.sub(&grads[0].scale(0.1)?)?.detach()?)?;
        b = backend.variable(&b.sub(&grads[1].scale(0.1)?)?.detach()?)?;
    }
    let last = loss_of(&w, &b)?.to_scalar_f32()?;
    ensure(initial > 1.0, "linear regression", || format!("initial loss {initial}, want > 1"))?;
    ensure(last < 1e-3, "linear regression", || format!("loss went from {initial} to {last}, want < 1e-3"))?;
    let wb: Vec<f64> = true_w.iter().copied().chain([true_b]).collect();
    let got: Vec<f32> = w.to_vec_f32()?.into_iter().chain(b.to_vec_f32()?).collect();
    assert_close("linear regression weights and bias", &got, &wb, 0.02)
}
