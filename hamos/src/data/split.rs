//! Checks of ID sets, the class-balanced validation split and the class-balanced training limit.

use hamos_api::{Error, Result};
use rand::seq::SliceRandom;

use super::{derived_rng, ImageSet, Stream};

/// Checks an ID set against `classes` (the training set's count): it has labels, every label
/// is in `0..classes` (an error names the first record that is not) and every class has images.
pub fn check_id_set(set: &ImageSet, classes: usize) -> Result<()> {
    let labels =
        set.labels.as_ref().ok_or_else(|| Error::Data(format!("{}: an ID set needs labels", set.name)))?;
    if labels.len() != set.len() {
        return Err(Error::Data(format!("{}: {} labels for {} images", set.name, labels.len(), set.len())));
    }
    if classes < 2 {
        return Err(Error::Data(format!(
            "{}: an ID set needs at least 2 classes, found {classes}",
            set.name
        )));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l < 0 || l as usize >= classes) {
        return Err(Error::Data(format!("{}: record {i} has label {l}, not in 0..{classes}", set.name)));
    }
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let empty: Vec<String> =
        counts.iter().enumerate().filter(|(_, &n)| n == 0).map(|(c, _)| c.to_string()).collect();
    if !empty.is_empty() {
        return Err(Error::Data(format!("{}: no images of class(es) {}", set.name, empty.join(", "))));
    }
    Ok(())
}

/// Indices of each class, in file order.
fn by_class(set: &ImageSet) -> Result<Vec<Vec<usize>>> {
    let labels = set
        .labels
        .as_ref()
        .ok_or_else(|| Error::Data(format!("{}: splitting by class needs labels", set.name)))?;
    let mut classes = vec![Vec::new(); set.classes];
    for (i, &l) in labels.iter().enumerate() {
        let class = usize::try_from(l).ok().and_then(|l| classes.get_mut(l));
        class
            .ok_or_else(|| {
                Error::Data(format!("{}: record {i} has label {l}, not in 0..{}", set.name, set.classes))
            })?
            .push(i);
    }
    Ok(classes)
}

/// Holds out `round(fraction * n_c)` random images of each class `c` (at most `n_c - 1`, so that
/// no class leaves training): (train, validation), each in file order, deterministic in `seed`.
pub fn split_validation(set: &ImageSet, fraction: f64, seed: u64) -> Result<(ImageSet, ImageSet)> {
    if !(0.0..1.0).contains(&fraction) {
        return Err(Error::invalid("data.validation_fraction", format!("{fraction} is not in [0, 1)")));
    }
    let mut train = Vec::with_capacity(set.len());
    let mut val = Vec::new();
    for (class, mut indices) in by_class(set)?.into_iter().enumerate() {
        let held = ((fraction * indices.len() as f64).round() as usize).min(indices.len().saturating_sub(1));
        indices.shuffle(&mut derived_rng(seed, Stream::Split, class as u64, 0));
        val.extend_from_slice(&indices[..held]);
        train.extend_from_slice(&indices[held..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    let mut validation = set.subset(&val)?;
    validation.name = format!("{}_validation", set.name);
    Ok((set.subset(&train)?, validation))
}

/// At most `total` images (0: all), class-balanced: `total / classes` of each class, one more
/// for the first `total % classes` classes, taken in file order (a class with fewer gives all
/// it has).
pub fn limit_per_class(set: &ImageSet, total: usize) -> Result<ImageSet> {
    if total == 0 || total >= set.len() {
        return Ok(set.clone());
    }
    if total < set.classes {
        return Err(Error::invalid(
            "data.train_limit",
            format!(
                "{total} is below the {} classes of {}: some class would be empty",
                set.classes, set.name
            ),
        ));
    }
    let (quota, extra) = (total / set.classes, total % set.classes);
    let mut keep: Vec<usize> = by_class(set)?
        .into_iter()
        .enumerate()
        .flat_map(|(c, indices)| indices.into_iter().take(quota + usize::from(c < extra)))
        .collect();
    keep.sort_unstable();
    set.subset(&keep)
}
