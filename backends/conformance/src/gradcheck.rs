//! Gradient checks against central finite differences of an `f64` host reference.
//!
//! For an op `f`, inputs `x_i` become backend variables, the scalar loss is
//! `sum(f(x) * w)` with random weights `w` (so every output element matters, with a different
//! weight), and the backend's `gradients` are compared with `(L(x + h) - L(x - h)) / 2h` where
//! `L` is the same loss computed on the host in `f64` with `h = 1e-6`: the only error measured is
//! the backend's own `f32` rounding.

use std::sync::Arc;

use hamos_api::{Backend, Result, Tensor};

use crate::reference::{assert_tensor, ensure, HostTensor, Inputs};

/// Tolerance for gradients (see [`crate::reference::assert_close`] for its meaning).
pub const GRAD_TOL: f64 = 1e-3;
/// Tolerance for forward values of `f32` ops compared with an `f64` reference.
pub const FORWARD_TOL: f64 = 1e-4;
const STEP: f64 = 1e-6;

/// Checks the forward values and the gradients of `on_backend` against `on_host` (the same op
/// written on [`HostTensor`]) at `inputs`, each input becoming a backend variable.
pub fn check_gradients(
    backend: &Arc<dyn Backend>,
    op: &str,
    inputs: &[HostTensor],
    on_backend: impl Fn(&[Tensor]) -> Result<Tensor>,
    on_host: impl Fn(&[HostTensor]) -> Result<HostTensor>,
    tol: f64,
) -> Result<()> {
    let vars = inputs.iter().map(|h| h.variable(backend)).collect::<Result<Vec<_>>>()?;
    let out = on_backend(&vars)?;
    let want_out = on_host(inputs)?;
    assert_tensor(&format!("{op} (forward)"), &out, &want_out, FORWARD_TOL.max(tol / 10.0))?;

    let weights = Inputs::new(0x5eed + inputs.len() as u64).normal(&want_out.dims);
    let loss = out.mul(&weights.upload(backend)?)?.sum_all()?;
    let refs: Vec<&Tensor> = vars.iter().collect();
    let grads = loss.gradients(&refs)?;
    ensure(grads.len() == inputs.len(), op, || {
        format!("gradients gave {} tensors for {} variables", grads.len(), inputs.len())
    })?;

    let host_loss = |xs: &[HostTensor]| -> Result<f64> {
        let y = on_host(xs)?;
        Ok(y.data.iter().zip(&weights.data).map(|(a, b)| a * b).sum())
    };
    let mut xs = inputs.to_vec();
    for (i, grad) in grads.iter().enumerate() {
        let mut want = Vec::with_capacity(inputs[i].elem_count());
        for j in 0..inputs[i].elem_count() {
            let x0 = inputs[i].data[j];
            xs[i].data[j] = x0 + STEP;
            let up = host_loss(&xs)?;
            xs[i].data[j] = x0 - STEP;
            let down = host_loss(&xs)?;
            xs[i].data[j] = x0;
            want.push((up - down) / (2.0 * STEP));
        }
        let want = HostTensor::new(&inputs[i].dims, want)?;
        assert_tensor(&format!("{op} (gradient wrt input {i})"), grad, &want, tol)?;
    }
    Ok(())
}

/// [`check_gradients`] for a one-input op with the default tolerance.
pub fn check_unary_gradient(
    backend: &Arc<dyn Backend>,
    op: &str,
    input: &HostTensor,
    on_backend: impl Fn(&Tensor) -> Result<Tensor>,
    on_host: impl Fn(&HostTensor) -> Result<HostTensor>,
) -> Result<()> {
    check_gradients(
        backend,
        op,
        std::slice::from_ref(input),
        |x| on_backend(&x[0]),
        |x| on_host(&x[0]),
        GRAD_TOL,
    )
}
