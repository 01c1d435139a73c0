//! The geometry of the unit sphere, the one home of it: the chains' state on the host, in
//! `f64`, as row-major `[m, d]` rows. A mini-batch has tens to hundreds of chains (`C N_adj`),
//! so a leapfrog step is at most a few million flops, less than launching its twenty-odd small
//! tensor ops costs; the chains' state therefore stays on the host between energy evaluations
//! (one upload of the positions and one download of the gradient per step).
//!
//! The building blocks of a [`Kernel`](crate::mcmc::Kernel): [`standard_normal`] and
//! [`tangent_normal`] noise, [`project_tangent`], [`geodesic_flow`], [`kick`], [`leapfrog`],
//! [`kinetic`] and [`energies`].

use hamos_api::{Backend, EnergyEval, Error, Result, Tensor};
use rand::RngCore;

use crate::mcmc::Target;

/// Row-major `[rows, dim]` values in `f64`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRows {
    /// The values, `rows * dim` of them.
    pub values: Vec<f64>,
    /// Values per row.
    pub dim: usize,
}

impl HostRows {
    /// A `[m, d]` tensor's values.
    pub fn download(tensor: &Tensor) -> Result<Self> {
        let dims = tensor.dims();
        let &[_, dim] = &dims[..] else {
            return Err(Error::shape("host rows", format!("needs [m, d], got {dims:?}")));
        };
        Ok(HostRows { values: tensor.to_vec_f32()?.into_iter().map(f64::from).collect(), dim })
    }

    /// Rows from `f32` values.
    pub fn from_f32(values: &[f32], dim: usize) -> Self {
        HostRows { values: values.iter().map(|&x| f64::from(x)).collect(), dim }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.values.len() / self.dim.max(1)
    }

    /// The values rounded to `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.values.iter().map(|&x| x as f32).collect()
    }

    /// The rows as an `f32` `[m, d]` tensor of `backend`.
    pub fn upload(&self, backend: &dyn Backend) -> Result<Tensor> {
        backend.from_f32(&self.to_f32(), &[self.rows(), self.dim])
    }

    /// Rounds every value to `f32` in place (the precision the tensors hold).
    pub fn round_to_f32(&mut self) {
        self.values.iter_mut().for_each(|x| *x = f64::from(*x as f32));
    }
}

/// Independent partial sums per reduction: a single running sum waits out the add latency at
/// every element, which made the leapfrog's dot products its slowest part.
const SUM_LANES: usize = 8;

/// `sum_i a_i b_i` over the common length, in [`SUM_LANES`] partial sums (vectorizes).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut lanes = [0.0f64; SUM_LANES];
    let (a_body, b_body) = (a.chunks_exact(SUM_LANES), b.chunks_exact(SUM_LANES));
    let tail: f64 = a_body.remainder().iter().zip(b_body.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a_body.zip(b_body) {
        for lane in 0..SUM_LANES {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `|a - b|^2` in `f64` for `f32` rows, in [`SUM_LANES`] partial sums (vectorizes).
pub(crate) fn distance_sq(a: &[f32], b: &[f32]) -> f64 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let square = |x: f32, y: f32| (f64::from(x) - f64::from(y)).powi(2);
    let mut lanes = [0.0f64; SUM_LANES];
    let (a_body, b_body) = (a.chunks_exact(SUM_LANES), b.chunks_exact(SUM_LANES));
    let tail: f64 = a_body.remainder().iter().zip(b_body.remainder()).map(|(&x, &y)| square(x, y)).sum();
    for (x, y) in a_body.zip(b_body) {
        for lane in 0..SUM_LANES {
            lanes[lane] += square(x[lane], y[lane]);
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// `v <- v - z (z . v)` row by row: the component of `v` tangent to the sphere at unit `z`.
pub fn project_tangent(z: &HostRows, v: &mut HostRows) {
    let dim = z.dim.max(1);
    for (v, z) in v.values.chunks_exact_mut(dim).zip(z.values.chunks_exact(dim)) {
        let along = dot(z, v);
        v.iter_mut().zip(z).for_each(|(v, z)| *v -= along * z);
    }
}

/// `q <- q - scale * (tangent part of g at z)` row by row (a momentum kick).
pub fn kick(z: &HostRows, q: &mut HostRows, g: &HostRows, scale: f64) {
    let dim = z.dim.max(1);
    for ((q, z), g) in
        q.values.chunks_exact_mut(dim).zip(z.values.chunks_exact(dim)).zip(g.values.chunks_exact(dim))
    {
        let along = dot(z, g);
        q.iter_mut().zip(z).zip(g).for_each(|((q, z), g)| *q -= scale * (g - along * z));
    }
}

/// Follows the great circle from unit `z` with tangent velocity `q` for time `t` (Eqn 3, lines
/// 2-3), in place: `z` becomes the renormalized new position and `q` the velocity transported
/// there, projected on its tangent space to absorb rounding.
pub fn geodesic_flow(z: &mut HostRows, q: &mut HostRows, t: f64) {
    let dim = z.dim.max(1);
    for (z, q) in z.values.chunks_exact_mut(dim).zip(q.values.chunks_exact_mut(dim)) {
        let speed = dot(q, q).sqrt();
        let (sin, cos) = (speed * t).sin_cos();
        let inverse_speed = 1.0 / speed.max(1e-30);
        for (z, q) in z.iter_mut().zip(q.iter_mut()) {
            let (z0, q0) = (*z, *q);
            *z = z0 * cos + q0 * inverse_speed * sin;
            *q = q0 * cos - z0 * speed * sin;
        }
        let inverse_norm = 1.0 / dot(z, z).sqrt().max(1e-300);
        z.iter_mut().for_each(|x| *x *= inverse_norm);
        let along = dot(z, q);
        q.iter_mut().zip(z.iter()).for_each(|(q, z)| *q -= along * z);
    }
}

/// `rows x dim` standard normals drawn on the host with
/// [`randn_host`](hamos_api::backend::randn_host), in row-major order.
pub fn standard_normal(rows: usize, dim: usize, rng: &mut dyn RngCore) -> HostRows {
    HostRows::from_f32(&hamos_api::backend::randn_host(rows * dim, 0.0, 1.0, rng), dim)
}

/// A tangent standard normal at each row of unit `z`: [`standard_normal`] projected on the
/// tangent spaces.
pub fn tangent_normal(z: &HostRows, rng: &mut dyn RngCore) -> HostRows {
    let mut v = standard_normal(z.rows(), z.dim, rng);
    project_tangent(z, &mut v);
    v
}

/// The energies `U` of an evaluation, in `f64`.
pub fn energies(eval: &EnergyEval) -> Result<Vec<f64>> {
    Ok(eval.energy.to_vec_f32()?.into_iter().map(f64::from).collect())
}

/// `|q|^2 / 2` per row.
pub fn kinetic(q: &HostRows) -> Vec<f64> {
    q.values.chunks_exact(q.dim.max(1)).map(|row| 0.5 * dot(row, row)).collect()
}

/// The end of a leapfrog trajectory.
#[derive(Debug, Clone)]
pub struct Trajectory {
    /// Final positions as a tensor (the one the energy was evaluated at).
    pub positions: Tensor,
    /// The same positions on the host.
    pub z: HostRows,
    /// Final momenta.
    pub momenta: HostRows,
    /// Energy and gradient at the final positions.
    pub eval: EnergyEval,
}

/// `steps` leapfrog steps of size `step_size` on the sphere (Eqn 3) of `target`'s energy from
/// positions `z` (the tensor `positions` on the host), momenta `q` and the energy `eval`
/// already evaluated at `z`. Costs `steps` energy evaluations: a step's end gradient is the
/// next step's start gradient. Positions are rounded to `f32` before each evaluation, so the
/// state always sits where the energy was evaluated.
pub fn leapfrog(
    target: &Target<'_>,
    positions: &Tensor,
    z: HostRows,
    q: HostRows,
    eval: &EnergyEval,
    step_size: f64,
    steps: usize,
) -> Result<Trajectory> {
    let backend = positions.backend();
    let (mut z, mut q, mut eval, mut positions) = (z, q, eval.clone(), positions.clone());
    let mut grad = HostRows::download(&eval.grad)?;
    for _ in 0..steps {
        kick(&z, &mut q, &grad, step_size / 2.0);
        geodesic_flow(&mut z, &mut q, step_size);
        z.round_to_f32();
        positions = z.upload(backend.as_ref())?;
        eval = target.eval(&positions)?;
        grad = HostRows::download(&eval.grad)?;
        kick(&z, &mut q, &grad, step_size / 2.0);
    }
    Ok(Trajectory { positions, z, momenta: q, eval })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_rows(values: &[f64], dim: usize) -> HostRows {
        let mut rows = HostRows { values: values.to_vec(), dim };
        for row in rows.values.chunks_exact_mut(dim) {
            let n = dot(row, row).sqrt();
            row.iter_mut().for_each(|x| *x /= n);
        }
        rows
    }

    #[test]
    fn geodesic_flow_matches_the_closed_form_great_circle() {
        // z = e0, q = 2 e1: after time t the position is (cos 2t, sin 2t, 0) and the velocity
        // (-2 sin 2t, 2 cos 2t, 0).
        let t = 0.37;
        let mut z = HostRows { values: vec![1.0, 0.0, 0.0], dim: 3 };
        let mut q = HostRows { values: vec![0.0, 2.0, 0.0], dim: 3 };
        geodesic_flow(&mut z, &mut q, t);
        let want_z = [(2.0 * t).cos(), (2.0 * t).sin(), 0.0];
        let want_q = [-2.0 * (2.0 * t).sin(), 2.0 * (2.0 * t).cos(), 0.0];
        for i in 0..3 {
            assert!((z.values[i] - want_z[i]).abs() < 1e-12, "z {:?}", z.values);
            assert!((q.values[i] - want_q[i]).abs() < 1e-12, "q {:?}", q.values);
        }
    }

    #[test]
    fn flow_keeps_unit_norm_tangency_and_speed_on_random_rows() {
        let mut state = 11u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let dim = 7;
        let raw: Vec<f64> = (0..5 * dim).map(|_| next()).collect();
        let mut z = unit_rows(&raw, dim);
        let mut q = HostRows { values: (0..5 * dim).map(|_| 3.0 * next()).collect(), dim };
        project_tangent(&z, &mut q);
        let speeds: Vec<f64> = kinetic(&q);
        geodesic_flow(&mut z, &mut q, 0.8);
        for (row, (zr, qr)) in z.values.chunks(dim).zip(q.values.chunks(dim)).enumerate() {
            assert!((dot(zr, zr) - 1.0).abs() < 1e-12, "row {row} left the sphere");
            assert!(dot(zr, qr).abs() < 1e-12, "row {row} velocity not tangent");
            assert!((0.5 * dot(qr, qr) - speeds[row]).abs() < 1e-10, "row {row} speed changed");
        }
    }

    #[test]
    fn kick_subtracts_the_tangent_part_only() {
        let z = unit_rows(&[1.0, 2.0, 2.0], 3);
        let mut q = HostRows { values: vec![0.5, -1.0, 0.75], dim: 3 };
        project_tangent(&z, &mut q);
        let g = HostRows { values: vec![0.3, -0.2, 0.9], dim: 3 };
        let before = q.clone();
        kick(&z, &mut q, &g, 0.5);
        // By hand: z = (1, 2, 2) / 3, z.g = (0.3 - 0.4 + 1.8) / 3 = 17 / 30.
        let along = 17.0 / 30.0;
        for i in 0..3 {
            let want = before.values[i] - 0.5 * (g.values[i] - along * z.values[i]);
            assert!((q.values[i] - want).abs() < 1e-12);
        }
        assert!(dot(&z.values, &q.values).abs() < 1e-12);
    }
}
