//! The k-NN OOD-ness energy of Eqns 1-4.

use std::collections::BTreeMap;

use hamos_api::config::positive;
use hamos_api::{ChainPairs, ClassBank, EnergyEval, OodnessEnergy, Result, Tensor};
use serde::{Deserialize, Serialize};

/// `U(z) = -log P(z)` with `P(z) = (|z - z_u(k)| + |z - z_v(k)|) / 2`, `z_c(k)` the exact k-th
/// nearest neighbour of `z` in class `c` of the buffer (Eqns 1-2).
///
/// The gradient is analytic: `dU/dz = -(1 / (2 P)) (e_u + e_v)` with `e_c` the unit vector from
/// `z_c(k)` to `z`. Eqn 4 of the paper prints the prefactor as `exp(-U) = P`; the derivative of
/// Eqn 2 is `1 / (2P)`, which is what this implements (checked against finite differences).
/// A class holding `n < k` embeddings uses its `n`-th neighbour (reported in the notes). Where
/// `z` coincides with its neighbour the distance is floored at `1e-12` and that term's
/// direction is zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnEnergy {
    /// Which neighbour (`k`, Table 4: 200).
    pub k: usize,
}

impl Default for KnnEnergy {
    fn default() -> Self {
        KnnEnergy { k: 200 }
    }
}

hamos_api::register_plugin!(
    Energy,
    KnnEnergy,
    "knn",
    "-log of the mean k-th nearest-neighbour distance to the chain's two classes (Eqns 1-4)"
);

impl KnnEnergy {
    /// The k-th nearest neighbour in class `u` and in class `v` of every chain, `[m, d]` each,
    /// and notes on classes holding fewer than `k` embeddings.
    pub fn neighbours(
        &self,
        z: &Tensor,
        pairs: &ChainPairs,
        bank: &ClassBank,
    ) -> Result<(Tensor, Tensor, Vec<String>)> {
        let (nearest, notes) = self.nearest_rows(z, pairs, bank)?;
        let (chains, dim) = (pairs.len(), bank.dim());
        let (u, v) = nearest.split_at(chains * dim);
        let backend = z.backend();
        Ok((backend.from_f32(u, &[chains, dim])?, backend.from_f32(v, &[chains, dim])?, notes))
    }

    /// The neighbours of [`KnnEnergy::neighbours`] on the host, `2 m` rows of `d`: class `u`'s,
    /// then `v`'s.
    fn nearest_rows(
        &self,
        z: &Tensor,
        pairs: &ChainPairs,
        bank: &ClassBank,
    ) -> Result<(Vec<f32>, Vec<String>)> {
        check_inputs(z, pairs, bank)?;
        let (classes, capacity, dim) = (bank.num_classes(), bank.capacity(), bank.dim());
        let notes = bank
            .counts()
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n < self.k)
            .map(|(class, &n)| {
                format!(
                    "knn energy: class {class} holds {n} < k = {} embeddings; using its {n}-th neighbour",
                    self.k
                )
            })
            .collect();
        let targets: Vec<(usize, usize)> =
            (pairs.pairs.iter().enumerate().map(|(chain, &(u, _))| (chain, u)))
                .chain(pairs.pairs.iter().enumerate().map(|(chain, &(_, v))| (chain, v)))
                .collect();
        let rows = z.class_kth_nearest(bank.embeddings(), bank.counts(), &targets, self.k)?.to_vec_i64()?;
        // Flat row indices `class * capacity + r`, in range by `class_kth_nearest`'s contract.
        let rows: Vec<usize> = rows.iter().map(|&row| usize::try_from(row).unwrap_or(usize::MAX)).collect();
        let flat_bank = bank.embeddings().reshape(&[classes * capacity, dim])?;
        Ok((flat_bank.rows_to_host(&rows)?, notes))
    }
}

fn check_inputs(z: &Tensor, pairs: &ChainPairs, bank: &ClassBank) -> Result<()> {
    let dims = z.dims();
    if dims.len() != 2 || dims[0] != pairs.len() || dims[1] != bank.dim() {
        return Err(hamos_api::Error::shape(
            "knn energy",
            format!("positions {dims:?} do not match {} chains of dimension {}", pairs.len(), bank.dim()),
        ));
    }
    let classes = bank.num_classes();
    if let Some(&(u, v)) = pairs.pairs.iter().find(|&&(u, v)| u >= classes || v >= classes) {
        return Err(hamos_api::Error::shape(
            "knn energy",
            format!("pair ({u}, {v}) out of range for {classes} classes"),
        ));
    }
    if let Some(class) = bank.counts().iter().position(|&n| n == 0) {
        let used = pairs.pairs.iter().any(|&(u, v)| u == class || v == class);
        if used {
            return Err(hamos_api::Error::Data(format!("knn energy: class {class} has no embeddings")));
        }
    }
    Ok(())
}

/// Distances to a neighbour at most this are floored to it, and the direction is zero.
const MEETING_DISTANCE: f64 = 1e-12;

/// Energy and gradient of every chain from its position `z` and its two neighbours `u`, `v`
/// (rows of `d` values), in `f64` on the host: a handful of `[m, d]` rows, where tensor ops
/// cost more in launches than in arithmetic.
fn energy_and_grad_rows(z: &[f32], u: &[f32], v: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let chains = z.len() / dim.max(1);
    let mut energy = Vec::with_capacity(chains);
    let mut grad = vec![0.0f32; z.len()];
    for chain in 0..chains {
        let span = chain * dim..(chain + 1) * dim;
        let position = &z[span.clone()];
        let distance = |neighbour: &[f32]| crate::sphere::distance_sq(position, neighbour).sqrt();
        let (to_u, to_v) = (distance(&u[span.clone()]), distance(&v[span.clone()]));
        let oodness = (to_u.max(MEETING_DISTANCE) + to_v.max(MEETING_DISTANCE)) / 2.0;
        energy.push(-oodness.ln() as f32);
        // dU/dz = -(1 / (2P)) (e_u + e_v), e_c the unit vector from the neighbour to z.
        let weight = |d: f64| if d > MEETING_DISTANCE { -1.0 / (2.0 * oodness * d) } else { 0.0 };
        let (weight_u, weight_v) = (weight(to_u), weight(to_v));
        for (((g, &p), &a), &b) in
            grad[span.clone()].iter_mut().zip(position).zip(&u[span.clone()]).zip(&v[span])
        {
            let p = f64::from(p);
            *g = (weight_u * (p - f64::from(a)) + weight_v * (p - f64::from(b))) as f32;
        }
    }
    (energy, grad)
}

#[typetag::serde(name = "knn")]
impl OodnessEnergy for KnnEnergy {
    fn validate(&self) -> Result<()> {
        positive("energy.k", self.k)
    }

    fn energy_and_grad(&self, z: &Tensor, pairs: &ChainPairs, bank: &ClassBank) -> Result<EnergyEval> {
        let (nearest, notes) = self.nearest_rows(z, pairs, bank)?;
        let (chains, dim) = (pairs.len(), bank.dim());
        let (u, v) = nearest.split_at(chains * dim);
        let (energy, grad) = energy_and_grad_rows(&z.to_vec_f32()?, u, v, dim);
        let backend = z.backend();
        Ok(EnergyEval {
            energy: backend.from_f32(&energy, &[chains])?,
            grad: backend.from_f32(&grad, &[chains, dim])?,
            notes: dedup(notes),
        })
    }
}

fn dedup(notes: Vec<String>) -> Vec<String> {
    notes.into_iter().map(|n| (n.clone(), n)).collect::<BTreeMap<_, _>>().into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_and_gradient_match_a_hand_computed_case() {
        // z = (1, 0, 0); u at distance 1 along y, v at distance 2 along z-axis.
        let (z, u, v) = ([1.0f32, 0.0, 0.0], [1.0f32, 1.0, 0.0], [1.0f32, 0.0, 2.0]);
        let (energy, grad) = energy_and_grad_rows(&z, &u, &v, 3);
        // P = (1 + 2) / 2 = 1.5, U = -ln 1.5; dU/dz = -(1 / 3) (e_u + e_v),
        // e_u = (0, -1, 0), e_v = (0, 0, -1).
        assert!((f64::from(energy[0]) + 1.5f64.ln()).abs() < 1e-7);
        let want = [0.0, 1.0 / 3.0, 1.0 / 3.0];
        for (g, w) in grad.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < 1e-7, "{grad:?}");
        }
    }

    #[test]
    fn a_neighbour_at_the_position_has_a_floored_distance_and_no_direction() {
        let (z, v) = ([0.6f32, 0.8, 0.0], [0.6f32, 0.8, 0.5]);
        let (energy, grad) = energy_and_grad_rows(&z, &z, &v, 3);
        // P = (1e-12 + 0.5) / 2; only v pulls: dU/dz = -(1 / (2P)) e_v, e_v = (0, 0, -1).
        let oodness = (MEETING_DISTANCE + 0.5) / 2.0;
        assert!((f64::from(energy[0]) + oodness.ln()).abs() < 1e-6);
        let want = [0.0, 0.0, 1.0 / (2.0 * oodness)];
        for (g, w) in grad.iter().zip(want) {
            assert!(g.is_finite() && (f64::from(*g) - w).abs() < 1e-5, "{grad:?}");
        }
    }
}
