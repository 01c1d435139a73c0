//! Chain starts (Algorithm 1, lines 1-4). The sphere's geometry lives in [`crate::sphere`].

use crate::sphere::dot;
use hamos_api::{Error, Result, Tensor};

/// Where the chains of one mini-batch start.
#[derive(Debug, Clone)]
pub struct ChainStarts {
    /// Unit-norm starts `[m, d]`.
    pub positions: Tensor,
    /// The class pair of each chain: class `c`, then its `n_adj` nearest classes.
    pub pairs: Vec<(usize, usize)>,
    /// What was adjusted (antipodal prototypes, `n_adj` clipped).
    pub notes: Vec<String>,
}

/// For each class `c`, its `n_adj` nearest classes `j` by cosine similarity of the prototypes
/// (ties broken by index); each chain starts at `b = normalize(mu_c + mu_j)`.
///
/// `n_adj >= c` is clipped to `c - 1`. When `mu_c + mu_j` is (near) zero, the prototypes are
/// antipodal and every point of the great circle between them is a midpoint: the start is then
/// the unit vector orthogonal to `mu_c` along the coordinate where `mu_c` is smallest.
pub fn chain_starts(prototypes: &Tensor, n_adj: usize) -> Result<ChainStarts> {
    let rows = prototypes.to_rows_f32()?;
    let classes = rows.len();
    if classes < 2 {
        return Err(Error::Data(format!("outlier synthesis needs at least 2 classes, got {classes}")));
    }
    let mut notes = Vec::new();
    let n_adj = if n_adj >= classes {
        notes.push(format!("n_adj = {n_adj} clipped to {} (classes - 1)", classes - 1));
        classes - 1
    } else {
        n_adj
    };
    let unit: Vec<Vec<f64>> =
        rows.iter().map(|r| normalized(r.iter().map(|&x| f64::from(x)).collect())).collect();
    let dim = unit[0].len();
    let mut pairs = Vec::with_capacity(classes * n_adj);
    let mut positions = Vec::with_capacity(classes * n_adj * dim);
    for (c, mu_c) in unit.iter().enumerate() {
        let mut others: Vec<(f64, usize)> =
            (0..classes).filter(|&j| j != c).map(|j| (dot(mu_c, &unit[j]), j)).collect();
        others.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, j) in others.iter().take(n_adj) {
            let sum: Vec<f64> = mu_c.iter().zip(&unit[j]).map(|(a, b)| a + b).collect();
            let start = if norm(&sum) > 1e-6 {
                normalized(sum)
            } else {
                notes.push(format!(
                    "classes {c} and {j} have antipodal prototypes; chain starts orthogonal to both"
                ));
                orthogonal_to(mu_c)
            };
            positions.extend(start.iter().map(|&x| x as f32));
            pairs.push((c, j));
        }
    }
    let positions = prototypes.backend().from_f32(&positions, &[pairs.len(), dim])?;
    Ok(ChainStarts { positions, pairs, notes })
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn normalized(mut v: Vec<f64>) -> Vec<f64> {
    let n = norm(&v).max(1e-300);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn orthogonal_to(mu: &[f64]) -> Vec<f64> {
    let axis = (0..mu.len()).min_by(|&a, &b| mu[a].abs().total_cmp(&mu[b].abs())).unwrap_or(0);
    let mut e: Vec<f64> = vec![0.0; mu.len()];
    e[axis] = 1.0;
    let along = dot(&e, mu);
    normalized(e.iter().zip(mu).map(|(x, m)| x - along * m).collect())
}
