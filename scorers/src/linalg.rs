//! Small dense f64 linear algebra on the host: Cholesky factor and triangular inverse.

/// The lower-triangular `L` with `a = L L^T` of a symmetric `n x n` row-major `a`, or the index
/// of the first non-positive pivot when `a` is not (numerically) positive definite.
pub(crate) fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>, usize> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let partial: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            let value = a[i * n + j] - partial;
            if i == j {
                if value <= 0.0 || !value.is_finite() {
                    return Err(i);
                }
                l[i * n + i] = value.sqrt();
            } else {
                l[i * n + j] = value / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// `L^{-1}` of a lower-triangular `L` with a positive diagonal (forward substitution on the
/// columns of the identity); the result is lower-triangular too.
pub(crate) fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut inv = vec![0.0; n * n];
    for col in 0..n {
        for row in col..n {
            let identity = if row == col { 1.0 } else { 0.0 };
            let partial: f64 = (col..row).map(|k| l[row * n + k] * inv[k * n + col]).sum();
            inv[row * n + col] = (identity - partial) / l[row * n + row];
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_and_inverse_reconstruct() {
        let a = [4.0, 2.0, 0.4, 2.0, 5.0, 1.0, 0.4, 1.0, 3.0];
        let l = cholesky(&a, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let product: f64 = (0..3).map(|k| l[i * 3 + k] * l[j * 3 + k]).sum();
                assert!((product - a[i * 3 + j]).abs() < 1e-12);
                let identity: f64 = (0..3).map(|k| l[i * 3 + k] * lower_inverse(&l, 3)[k * 3 + j]).sum();
                assert!((identity - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert_eq!(cholesky(&[1.0, 2.0, 2.0, 1.0], 2), Err(1));
    }
}
