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
        check_inputs(z, pairs, bank)?;
        let (classes, capacity, dim, chains) = (bank.num_classes(), bank.capacity(), bank.dim(), pairs.len());
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
        let rows = z.class_kth_nearest(bank.embeddings(), bank.counts(), &targets, self.k)?;
        let flat_bank = bank.embeddings().reshape(&[classes * capacity, dim])?;
        let nearest = flat_bank.index_select(0, &rows)?;
        Ok((nearest.narrow(0, 0, chains)?, nearest.narrow(0, chains, chains)?, notes))
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

/// Distance to `neighbour` floored at 1e-12, and the unit direction from it (zero when they meet).
fn distance_and_direction(z: &Tensor, neighbour: &Tensor) -> Result<(Tensor, Tensor)> {
    let diff = z.sub(neighbour)?;
    let dist = diff.norm(1, true)?;
    let floored = dist.clamp(1e-12, f64::INFINITY)?;
    let meets = dist.le(&dist.scalar_like(1e-12)?)?;
    let direction = meets.where_mask(&diff.full_like(0.0)?, &diff.div(&floored)?)?;
    Ok((floored, direction))
}

#[typetag::serde(name = "knn")]
impl OodnessEnergy for KnnEnergy {
    fn validate(&self) -> Result<()> {
        positive("energy.k", self.k)
    }

    fn energy_and_grad(&self, z: &Tensor, pairs: &ChainPairs, bank: &ClassBank) -> Result<EnergyEval> {
        let (first, second, notes) = self.neighbours(z, pairs, bank)?;
        let (dist_u, dir_u) = distance_and_direction(z, &first)?;
        let (dist_v, dir_v) = distance_and_direction(z, &second)?;
        let oodness = dist_u.add(&dist_v)?.scale(0.5)?;
        let energy = oodness.log()?.neg()?.reshape(&[pairs.len()])?;
        let grad = dir_u.add(&dir_v)?.div(&oodness.scale(-2.0)?)?;
        Ok(EnergyEval { energy, grad, notes: dedup(notes) })
    }
}

fn dedup(notes: Vec<String>) -> Vec<String> {
    notes.into_iter().map(|n| (n.clone(), n)).collect::<BTreeMap<_, _>>().into_values().collect()
}
