//! What the one-shot baselines (`vos`, `npos`) share: packaging per-class outliers as a
//! [`Synthesis`] with the OOD-ness diagnostics of the chains.

use hamos_api::{
    ChainPairs, ClassBank, OodnessEnergy, OutlierTag, Result, RoundDiagnostics, Synthesis, Tensor,
};

/// Errors unless the buffer has at least 2 classes and none is empty.
pub(crate) fn check_bank(bank: &ClassBank, name: &str) -> Result<()> {
    if bank.num_classes() < 2 {
        return Err(hamos_api::Error::Data(format!("{name} needs at least 2 classes")));
    }
    if let Some(class) = bank.counts().iter().position(|&n| n == 0) {
        return Err(hamos_api::Error::Data(format!("{name}: class {class} has no embeddings")));
    }
    Ok(())
}

/// Wraps `per_class` outliers of each class (rows grouped by class) as one round, measuring
/// their OOD-ness against their own class.
pub(crate) fn package(
    outliers: Tensor,
    per_class: usize,
    bank: &ClassBank,
    energy: &dyn OodnessEnergy,
    notes: Vec<String>,
) -> Result<Synthesis> {
    let classes = bank.num_classes();
    let pairs: Vec<(usize, usize)> =
        (0..classes).flat_map(|c| std::iter::repeat_n((c, c), per_class)).collect();
    let tags = pairs
        .iter()
        .enumerate()
        .map(|(chain, &(c, _))| OutlierTag { chain, class_u: c, class_v: c, round: 0 })
        .collect();
    let chain_pairs = ChainPairs::new(&outliers.backend(), pairs)?;
    let eval = energy.energy_and_grad(&outliers, &chain_pairs, bank)?;
    let energies = eval.energy.to_vec_f32()?;
    let count = energies.len();
    let mean_oodness = energies.iter().map(|&u| (-f64::from(u)).exp()).sum::<f64>() / count.max(1) as f64;
    let mut notes = notes;
    notes.extend(eval.notes);
    let round = RoundDiagnostics {
        round: 0,
        active_chains: count,
        acceptance_rate: 1.0,
        mean_oodness,
        ..RoundDiagnostics::default()
    };
    Ok(Synthesis { outliers, tags, rounds: vec![round], stopped_chains: Vec::new(), notes })
}

/// Lower Cholesky factor of a symmetric positive-definite `n x n` matrix (row-major, f64).
pub(crate) fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let dot: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - dot;
                if d <= 0.0 || !d.is_finite() {
                    return Err(hamos_api::Error::Data(format!(
                        "covariance is not positive definite at row {i}; raise `ridge`"
                    )));
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - dot) / l[j * n + j];
            }
        }
    }
    Ok(l)
}
