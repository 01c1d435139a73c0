//! The class-bank kernels of synthesis, which a backend may fuse (`hamos_api::BankKernels`):
//! `class_kth_nearest`, the k-NN energy's core (the exact k-th nearest row per (query, class),
//! ties by lower row, against an f64 sort), `class_logsumexp` (the vMF barrier), `class_gram`
//! (its screening moments) and `rows_to_host`.

use std::sync::Arc;

use hamos_api::{Backend, Result};

use crate::reference::{assert_i64, assert_tensor, ensure, HostTensor, Inputs};

/// Rows of `bank` (`[c, s, d]` host values) ranked by f64 distance to `query`, ties by row.
fn ranked(bank: &HostTensor, class: usize, count: usize, query: &[f64]) -> Vec<usize> {
    let (capacity, dim) = (bank.dims[1], bank.dims[2]);
    let dist = |r: usize| -> f64 {
        let row = &bank.data[(class * capacity + r) * dim..(class * capacity + r + 1) * dim];
        row.iter().zip(query).map(|(a, b)| (a - b).powi(2)).sum()
    };
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by(|&a, &b| dist(a).total_cmp(&dist(b)).then(a.cmp(&b)));
    order
}

/// Every (query, class) pair, classes of different fill (one with a single row, fewer rows than
/// `k`), an exact duplicate row (a tie the lower row must win), and the error cases.
pub fn class_kth_nearest(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(808);
    // 11 queries per class: more than one tile of queries, the last one partly filled.
    let (m, classes, capacity, dim) = (11, 5, 300, 16);
    let queries = inputs.normal(&[m, dim]).round_f32();
    let mut bank = inputs.normal(&[classes, capacity, dim]).round_f32();
    let counts = [300, 1, 150, 299, 40];
    // Row 11 of class 0 duplicates row 10.
    let (from, to) = (10 * dim, 11 * dim);
    let row: Vec<f64> = bank.data[from..from + dim].to_vec();
    bank.data[to..to + dim].copy_from_slice(&row);
    let targets: Vec<(usize, usize)> = (0..m).flat_map(|q| (0..classes).map(move |c| (q, c))).collect();
    let (tq, tb) = (queries.upload(backend)?, bank.upload(backend)?);
    for k in [1, 50, 200] {
        let got = tq.class_kth_nearest(&tb, &counts, &targets, k)?.to_vec_i64()?;
        let want: Vec<i64> = targets
            .iter()
            .map(|&(q, c)| {
                let order = ranked(&bank, c, counts[c], &queries.data[q * dim..(q + 1) * dim]);
                (c * capacity + order[k.min(counts[c]) - 1]) as i64
            })
            .collect();
        assert_i64(&format!("class_kth_nearest k {k}"), &got, &want)?;
    }
    // The duplicate pair: at its rank the lower row wins, one rank later the other.
    let order = ranked(&bank, 0, counts[0], &queries.data[..dim]);
    let rank = order.iter().position(|&r| r == 10).unwrap_or(0) + 1;
    let tie = tq.class_kth_nearest(&tb, &counts, &[(0, 0)], rank)?.to_vec_i64()?;
    let next = tq.class_kth_nearest(&tb, &counts, &[(0, 0)], rank + 1)?.to_vec_i64()?;
    assert_i64("class_kth_nearest tie", &[tie[0], next[0]], &[10, 11])?;

    let mut emptied = counts;
    emptied[2] = 0;
    let empty = tq.class_kth_nearest(&tb, &emptied, &[(0, 2)], 3);
    ensure(empty.is_err(), "class_kth_nearest", || "a class with no rows was accepted".into())?;
    let out_of_range = tq.class_kth_nearest(&tb, &counts, &[(m, 0)], 3);
    ensure(out_of_range.is_err(), "class_kth_nearest", || "a query out of range was accepted".into())?;
    let zero_k = tq.class_kth_nearest(&tb, &counts, &[(0, 0)], 0);
    ensure(zero_k.is_err(), "class_kth_nearest", || "k = 0 was accepted".into())
}

/// Two rows whose distances to a query tie in `f32` (they differ by 0.02 next to 1e6) but not
/// in `f64`: the k-th is settled in `f64` against that very query, whatever other queries the
/// call holds. The two queries rank the pair in opposite orders; each is asked alone, and both
/// together in several orders (a version that re-ranks against another query's row fails).
pub fn class_kth_nearest_near_ties(backend: &Arc<dyn Backend>) -> Result<()> {
    let e = 0.005;
    let queries = HostTensor::new(&[2, 4], vec![1000.0, 1.0, 0.0, 0.0, 1000.0, -1.0, 0.0, 0.0])?.round_f32();
    let rows = [0.0, 0.0, 50.0, 0.0, 0.0, e, 0.0, 0.0, 0.0, -e, 0.0, 0.0, 0.0, 0.0, 0.0, 60.0];
    let bank = HostTensor::new(&[2, 4, 4], rows.iter().chain(&rows).copied().collect())?.round_f32();
    let counts = [4, 4];
    let (tq, tb) = (queries.upload(backend)?, bank.upload(backend)?);
    let cases: [&[(usize, usize)]; 5] = [
        &[(0, 0)],
        &[(1, 0)],
        &[(1, 0), (0, 1)],
        &[(0, 1), (1, 1), (1, 0)],
        &[(1, 1), (0, 0), (0, 1), (1, 0)],
    ];
    for targets in cases {
        for k in [1, 2] {
            let got = tq.class_kth_nearest(&tb, &counts, targets, k)?.to_vec_i64()?;
            let want: Vec<i64> = targets
                .iter()
                .map(|&(q, c)| (c * 4 + ranked(&bank, c, 4, &queries.data[q * 4..(q + 1) * 4])[k - 1]) as i64)
                .collect();
            assert_i64(&format!("class_kth_nearest near ties, targets {targets:?}, k {k}"), &got, &want)?;
        }
    }
    Ok(())
}

/// `class_logsumexp` (fused where the backend fuses it) matches an f64 loop, with classes of
/// different fill (one with a single row), unit-norm rows, and a large scale.
pub fn class_logsumexp(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(707);
    let (m, classes, capacity, dim) = (9, 7, 300, 16);
    let unit = |t: HostTensor| -> Result<HostTensor> {
        let rows: Vec<f64> = t
            .data
            .chunks(dim)
            .flat_map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f64>().sqrt();
                r.iter().map(move |x| x / n).collect::<Vec<_>>()
            })
            .collect();
        HostTensor::new(&t.dims, rows).map(|h| h.round_f32())
    };
    let queries = unit(inputs.normal(&[m, dim]))?;
    let bank = unit(inputs.normal(&[classes, capacity, dim]))?;
    let counts = [300, 1, 150, 299, 17, 300, 64];
    for scale in [2.0, 40.0] {
        let mut want = Vec::with_capacity(m * classes);
        for q in queries.data.chunks(dim) {
            for (c, &n) in counts.iter().enumerate() {
                let logits: Vec<f64> = (0..n)
                    .map(|s| {
                        let row = &bank.data[(c * capacity + s) * dim..(c * capacity + s + 1) * dim];
                        scale * q.iter().zip(row).map(|(a, b)| a * b).sum::<f64>()
                    })
                    .collect();
                let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                want.push(max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln());
            }
        }
        let got = queries.upload(backend)?.class_logsumexp(&bank.upload(backend)?, &counts, scale)?;
        assert_tensor(
            &format!("class_logsumexp scale {scale}"),
            &got,
            &HostTensor::new(&[m, classes], want)?,
            1e-4,
        )?;
    }
    let bad = queries.upload(backend)?.class_logsumexp(&bank.upload(backend)?, &[1, 2], 1.0);
    ensure(bad.is_err(), "class_logsumexp", || "wrong count of classes accepted".into())
}

/// `class_gram` (fused where the backend fuses it) matches f64 sums, with a dimension that is
/// not a multiple of any tile and more rows than one chunk.
pub fn class_gram(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(708);
    let (classes, capacity, dim) = (3, 130, 29);
    let bank = inputs.normal(&[classes, capacity, dim]);
    let mut want = Vec::with_capacity(classes * dim * dim);
    for class in bank.data.chunks(capacity * dim) {
        for a in 0..dim {
            for b in 0..dim {
                want.push(class.chunks(dim).map(|row| row[a] * row[b]).sum::<f64>());
            }
        }
    }
    let got = bank.upload(backend)?.class_gram()?;
    assert_tensor("class_gram", &got, &HostTensor::new(&[classes, dim, dim], want)?, 1e-4)?;
    let flat = backend.zeros(&[4, 5])?.class_gram();
    ensure(flat.is_err(), "class_gram", || "a rank-2 tensor accepted".into())
}

/// `rows_to_host` (a backend's direct copy where it has one) equals the rows themselves: a
/// contiguous tensor, a reshaped bank, a non-contiguous transpose; out-of-range rows and a
/// rank-3 tensor are errors.
pub fn rows_to_host(backend: &Arc<dyn Backend>) -> Result<()> {
    let mut inputs = Inputs::new(605);
    let x = inputs.normal(&[6, 5]);
    let picks = [4usize, 0, 0, 5, 2];
    let want: Vec<f32> = picks.iter().flat_map(|&r| x.to_f32()[r * 5..(r + 1) * 5].to_vec()).collect();
    let got = x.upload(backend)?.rows_to_host(&picks)?;
    ensure(got == want, "rows_to_host", || format!("{got:?} vs {want:?}"))?;
    let bank = inputs.normal(&[2, 3, 4]);
    let flat = bank.upload(backend)?.reshape(&[6, 4])?;
    let got = flat.rows_to_host(&[5, 1])?;
    let want: Vec<f32> =
        [5usize, 1].iter().flat_map(|&r| bank.to_f32()[r * 4..(r + 1) * 4].to_vec()).collect();
    ensure(got == want, "rows_to_host of a reshaped bank", || format!("{got:?} vs {want:?}"))?;
    let transposed = x.upload(backend)?.t()?; // [5, 6], not contiguous
    let got = transposed.rows_to_host(&[3])?;
    let want: Vec<f32> = (0..6).map(|r| x.to_f32()[r * 5 + 3]).collect();
    ensure(got == want, "rows_to_host of a transpose", || format!("{got:?} vs {want:?}"))?;
    ensure(x.upload(backend)?.rows_to_host(&[6]).is_err(), "rows_to_host", || "row 6 of 6 accepted".into())?;
    let cube = bank.upload(backend)?.rows_to_host(&[0]);
    ensure(cube.is_err(), "rows_to_host", || "a rank-3 tensor accepted".into())
}
