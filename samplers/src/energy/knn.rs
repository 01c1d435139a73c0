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

/// Which chain sides look at each class, padded to a rectangle for one batched product.
struct ClassReferences {
    /// `[c * width]` chain index per slot (padding repeats chain 0).
    chains: Vec<i64>,
    /// Slot of chain `m`'s first and second class in the flattened `[c * width]` layout.
    first_slot: Vec<i64>,
    second_slot: Vec<i64>,
    width: usize,
}

impl ClassReferences {
    fn new(pairs: &[(usize, usize)], classes: usize) -> Self {
        let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
        let mut sides = Vec::with_capacity(pairs.len());
        for (chain, &(u, v)) in pairs.iter().enumerate() {
            per_class[u].push(chain);
            let first = per_class[u].len() - 1;
            per_class[v].push(chain);
            let second = per_class[v].len() - 1;
            sides.push(((u, first), (v, second)));
        }
        let width = per_class.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut chains = vec![0i64; classes * width];
        for (class, refs) in per_class.iter().enumerate() {
            for (slot, &chain) in refs.iter().enumerate() {
                chains[class * width + slot] = chain as i64;
            }
        }
        let slot = |(class, i): (usize, usize)| (class * width + i) as i64;
        ClassReferences {
            chains,
            first_slot: sides.iter().map(|&(a, _)| slot(a)).collect(),
            second_slot: sides.iter().map(|&(_, b)| slot(b)).collect(),
            width,
        }
    }
}

impl KnnEnergy {
    /// The k-th nearest neighbour in class `u` and in class `v` of every chain, `[m, d]` each.
    pub fn neighbours(
        &self,
        z: &Tensor,
        pairs: &ChainPairs,
        bank: &ClassBank,
    ) -> Result<(Tensor, Tensor, Vec<String>)> {
        let (classes, capacity, dim) = (bank.num_classes(), bank.capacity(), bank.dim());
        check_inputs(z, pairs, bank)?;
        let backend = z.backend();
        let refs = ClassReferences::new(&pairs.pairs, classes);
        let chain_idx = backend.from_i64(&refs.chains, &[refs.chains.len()])?;
        // [c, width, d] x [c, d, s]: each class only meets the chains that reference it.
        let queries = z.index_select(0, &chain_idx)?.reshape(&[classes, refs.width, dim])?;
        // bank x queries^T keeps the big operand contiguous (no per-call copy of the bank).
        let dots = bank.embeddings().matmul(&queries.transpose(1, 2)?)?.transpose(1, 2)?;
        let bank_sq = bank.row_sq_norms();
        let query_sq = queries.sqr()?.sum(2, true)?;
        let dist_sq = dots.scale(-2.0)?.add(bank_sq)?.add(&query_sq)?;
        let valid = bank.valid_mask()?.reshape(&[classes, 1, capacity])?;
        let dist_sq = valid.where_mask(&dist_sq, &dist_sq.scalar_like(f32::INFINITY)?)?;

        let k_max = self.k.min(capacity);
        let mut notes = Vec::new();
        let k_per_class: Vec<usize> = bank
            .counts()
            .iter()
            .enumerate()
            .map(|(class, &n)| {
                let k = self.k.min(n);
                if k < self.k {
                    notes.push(format!(
                        "knn energy: class {class} holds {n} < k = {} embeddings; using its {k}-th neighbour",
                        self.k
                    ));
                }
                k
            })
            .collect();
        let kth = if k_per_class.iter().all(|&k| k == k_max) {
            // Every class has k rows: select the k-th directly, without sorting the k nearest.
            dist_sq.kth_smallest(k_max, 2)?.1.to_vec_i64()?
        } else {
            let (_, nearest) = dist_sq.topk(k_max, 2, false)?;
            let column: Vec<i64> =
                k_per_class.iter().flat_map(|&k| std::iter::repeat_n(k as i64 - 1, refs.width)).collect();
            nearest.gather(2, &backend.from_i64(&column, &[classes, refs.width, 1])?)?.to_vec_i64()?
        };
        let rows: Vec<i64> =
            kth.iter().enumerate().map(|(slot, &i)| (slot / refs.width * capacity) as i64 + i).collect();
        let flat_bank = bank.embeddings().reshape(&[classes * capacity, dim])?;
        let per_slot = flat_bank.index_select(0, &backend.from_i64(&rows, &[rows.len()])?)?;
        let first = per_slot.index_select(0, &backend.from_i64(&refs.first_slot, &[pairs.len()])?)?;
        let second = per_slot.index_select(0, &backend.from_i64(&refs.second_slot, &[pairs.len()])?)?;
        Ok((first, second, notes))
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
