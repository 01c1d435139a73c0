//! The exact k-th nearest neighbour within a class, the core of the k-NN energy (Eqn 2).
//!
//! Distances are computed in `f32` (a matrix product), the k-th is selected on the host, and
//! rows whose `f32` distance lies within rounding of the k-th are re-ranked in `f64`, ties by
//! lowest row index. So the answer is the f64 k-th neighbour on every backend, whatever its
//! matrix product's rounding: two backends given the same inputs pick the same row.

use super::selection::{resolve_kth_tie, select_kth, KthSelection};
use super::Tensor;
use crate::error::{Error, Result};

impl Tensor {
    /// For queries `self` `[m, d]`, a class bank `[c, s, d]` whose class `i` holds `counts[i]`
    /// valid rows, and requests `targets` of `(query row, class)`: the flat row index
    /// `class * s + r` (`I64`, `[targets.len()]`) of the `min(k, counts[class])`-th nearest valid
    /// row `r` of that class by Euclidean distance, exact in the sense of the module docs.
    ///
    /// Provided: the generic version ([`generic_class_kth_nearest`]) is a batched matrix product
    /// plus a host-side selection; backends may fuse it
    /// ([`BankKernels::class_kth_nearest`](super::BankKernels)). No gradient (indices).
    pub fn class_kth_nearest(
        &self,
        bank: &Tensor,
        counts: &[usize],
        targets: &[(usize, usize)],
        k: usize,
    ) -> Result<Tensor> {
        let (m, classes, _, _) = class_bank_shape("class_kth_nearest", self, bank, counts)?;
        if k == 0 {
            return Err(Error::shape("class_kth_nearest", "k must be at least 1"));
        }
        if let Some(&(row, class)) = targets.iter().find(|&&(row, class)| row >= m || class >= classes) {
            return Err(Error::shape(
                "class_kth_nearest",
                format!(
                    "target (query {row}, class {class}) out of range for {m} queries and {classes} classes"
                ),
            ));
        }
        if let Some(&(_, class)) = targets.iter().find(|&&(_, class)| counts[class] == 0) {
            return Err(Error::Data(format!("class_kth_nearest: class {class} has no rows")));
        }
        self.backend().bank_kernels().class_kth_nearest(self, bank, counts, targets, k)
    }
}

/// The generic [`Tensor::class_kth_nearest`]: a batched matrix product and a host-side
/// selection, for arguments that [`Tensor::class_kth_nearest`] has validated. Backends that
/// fuse it ([`BankKernels::class_kth_nearest`](super::BankKernels)) fall back to it where they
/// do not (off the CPU, say).
pub fn generic_class_kth_nearest(
    queries: &Tensor,
    bank: &Tensor,
    counts: &[usize],
    targets: &[(usize, usize)],
    k: usize,
) -> Result<Tensor> {
    let (_, classes, capacity, dim) = class_bank_shape("class_kth_nearest", queries, bank, counts)?;
    if targets.is_empty() {
        return queries.backend().from_i64(&[], &[0]);
    }

    // Each class meets only the queries that target it, padded to a common width.
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    let mut slot_of = Vec::with_capacity(targets.len());
    for &(row, class) in targets {
        slot_of.push(per_class[class].len());
        per_class[class].push(row);
    }
    let width = per_class.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let rows: Vec<i64> = per_class
        .iter()
        .flat_map(|q| (0..width).map(move |slot| q.get(slot).copied().unwrap_or(0) as i64))
        .collect();
    let backend = queries.backend();
    let gathered =
        queries.index_select(0, &backend.from_i64(&rows, &[rows.len()])?)?.reshape(&[classes, width, dim])?;
    let dots = bank.matmul(&gathered.transpose(1, 2)?)?.transpose(1, 2)?;
    let bank_sq = bank.sqr()?.sum(2, true)?.transpose(1, 2)?;
    let query_sq = gathered.sqr()?.sum(2, true)?;
    let dist_sq = dots.scale(-2.0)?.add(&bank_sq)?.add(&query_sq)?.to_vec_f32()?;
    let host_queries = queries.to_vec_f32()?;
    let query_sq = |row: usize| host_queries[row * dim..(row + 1) * dim].iter().map(|x| x * x).sum::<f32>();

    let mut found = vec![0i64; targets.len()];
    let mut tied = Vec::new();
    for (target, (&(row, class), &slot)) in targets.iter().zip(&slot_of).enumerate() {
        let start = (class * width + slot) * capacity;
        let kc = k.min(counts[class]);
        match select_kth(&dist_sq[start..start + counts[class]], kc, query_sq(row)) {
            KthSelection::Unique(r) => found[target] = (class * capacity + r) as i64,
            KthSelection::Tied { below, candidates } => tied.push((target, below, candidates)),
        }
    }
    if !tied.is_empty() {
        let flat: Vec<i64> = tied
            .iter()
            .flat_map(|(target, _, candidates)| {
                let class = targets[*target].1;
                candidates.iter().map(move |&r| (class * capacity + r) as i64)
            })
            .collect();
        let flat_bank = bank.reshape(&[classes * capacity, dim])?;
        let fetched = flat_bank.index_select(0, &backend.from_i64(&flat, &[flat.len()])?)?.to_vec_f32()?;
        let mut offset = 0;
        for (target, below, candidates) in tied {
            let (row, class) = targets[target];
            let query = &host_queries[row * dim..(row + 1) * dim];
            let base = offset;
            let position = |r: usize| candidates.iter().position(|&c| c == r).unwrap_or(0);
            let winner = resolve_kth_tie(below, &candidates, k.min(counts[class]), query, |r| {
                let i = base + position(r);
                &fetched[i * dim..(i + 1) * dim]
            });
            found[target] = (class * capacity + winner) as i64;
            offset += candidates.len();
        }
    }
    backend.from_i64(&found, &[found.len()])
}

/// Checks `[m, d]` queries against a `[c, s, d]` bank with `c` counts `<= s`.
pub(crate) fn class_bank_shape(
    op: &'static str,
    queries: &Tensor,
    bank: &Tensor,
    counts: &[usize],
) -> Result<(usize, usize, usize, usize)> {
    let (qd, bd) = (queries.dims(), bank.dims());
    match (&qd[..], &bd[..]) {
        (&[m, d], &[c, s, d2]) if d == d2 && counts.len() == c && counts.iter().all(|&n| n <= s) => {
            Ok((m, c, s, d))
        }
        _ => Err(Error::shape(
            op,
            format!(
                "needs [m, d] queries, a [c, s, d] bank and c counts <= s; got {qd:?}, {bd:?}, {} counts",
                counts.len()
            ),
        )),
    }
}
