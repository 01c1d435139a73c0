//! `class_kth_nearest`, the k-NN energy's core: the exact k-th nearest row per (query, class),
//! ties by lower row, against an f64 sort.

use std::sync::Arc;

use hamos_api::{Backend, Result};

use crate::reference::{assert_i64, ensure, HostTensor, Inputs};

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
