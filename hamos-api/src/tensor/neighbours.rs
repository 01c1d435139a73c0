//! The exact k-th nearest neighbour within a class, the core of the k-NN energy (Eqn 2).
//!
//! Distances are computed in `f32` (a matrix product), the k-th is selected on the host, and
//! rows whose `f32` distance lies within rounding of the k-th are re-ranked in `f64`, ties by
//! lowest row index. So the answer is the f64 k-th neighbour on every backend, whatever its
//! matrix product's rounding: two backends given the same inputs pick the same row.

use super::Tensor;
use crate::error::{Error, Result};

/// Relative width of the window of `f32` distances re-ranked in `f64`. The rounding of
/// `|q|^2 + |x|^2 - 2 q.x` in `f32` is about `sqrt(d) 2^-24 (|q|^2 + |x|^2)` (1e-6 for
/// `d = 512`); the window is ten times wider and is rarely populated by more than one row.
const TIE_WINDOW: f32 = 1e-5;

/// The k-th smallest of one class's `f32` squared distances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KthSelection {
    /// Only this row is within rounding of the k-th distance: it is the k-th.
    Unique(usize),
    /// `below` rows are certainly nearer; the k-th is the `(k - below)`-th of `candidates` in
    /// exact distance (see [`resolve_kth_tie`]).
    Tied {
        /// Rows certainly nearer than every candidate.
        below: usize,
        /// Rows within rounding of the k-th distance, ascending.
        candidates: Vec<usize>,
    },
}

/// Selects the `k`-th (1-based) smallest of `dist_sq` without sorting; `query_sq` is the
/// query's squared norm (it sets the rounding window). NaN sorts last; negative values (from
/// rounding) count as 0. `k` is clamped to `1..=dist_sq.len()`; an empty slice has no k-th and
/// gives `Tied` with no candidates.
pub fn select_kth(dist_sq: &[f32], k: usize, query_sq: f32) -> KthSelection {
    if dist_sq.is_empty() {
        return KthSelection::Tied { below: 0, candidates: Vec::new() };
    }
    let k = k.clamp(1, dist_sq.len());
    let kth = kth_key_by_histogram(dist_sq, k).unwrap_or_else(|| kth_key_by_quickselect(dist_sq, k));
    let (kth_dist, kth_row) = (f32::from_bits((kth >> 32) as u32), (kth & 0xffff_ffff) as usize);
    if !kth_dist.is_finite() {
        return KthSelection::Unique(kth_row);
    }
    // |x| <= |q| + |q - x| bounds the row's norm from the distance itself; the rounding
    // scales with |q|^2 + |x|^2.
    let query_norm = query_sq.max(0.0).sqrt();
    let scale = query_sq + (query_norm + kth_dist.sqrt()).powi(2);
    let tolerance = TIE_WINDOW * scale.max(f32::MIN_POSITIVE);
    let (low, high) = (kth_dist - tolerance, kth_dist + tolerance);
    // Branch-free so it vectorizes: negative rounding reads as 0; NaN fails every comparison,
    // as the infinity it stands for would.
    let floor = |d: f32| if d < 0.0 { 0.0 } else { d };
    let in_window = |d: f32| {
        let d = floor(d);
        d >= low && d <= high
    };
    // The k-th itself is in the window; usually nothing else is.
    if dist_sq.iter().map(|&d| usize::from(in_window(d))).sum::<usize>() == 1 {
        return KthSelection::Unique(kth_row);
    }
    let below: usize = dist_sq.iter().map(|&d| usize::from(floor(d) < low)).sum();
    let candidates: Vec<usize> = (0..dist_sq.len()).filter(|&row| in_window(dist_sq[row])).collect();
    KthSelection::Tied { below, candidates }
}

/// Bins of the histogram pass of [`kth_key_by_histogram`].
const SELECTION_BINS: usize = 256;

/// The order key (distance bits above, row below) of `x`: the (value, row) order of the
/// floored distances is the order of the keys.
#[inline]
fn order_key(row: usize, d: f32) -> u64 {
    (u64::from(distance_bits(d)) << 32) | row as u64
}

/// The key of the `k`-th (1-based, in range) smallest by selection over all keys.
fn kth_key_by_quickselect(dist_sq: &[f32], k: usize) -> u64 {
    let mut keys: Vec<u64> = dist_sq.iter().enumerate().map(|(row, &d)| order_key(row, d)).collect();
    *keys.select_nth_unstable(k - 1).1
}

/// The key of the `k`-th (1-based, in range) smallest, by a histogram of the values between
/// their minimum and maximum: the bin holding rank `k` is found by counting, and only its few
/// members are selected among. The bin index is a monotone function of the value, so lower
/// bins hold only smaller (or equal) values. `None` (use [`kth_key_by_quickselect`]) for short
/// slices, non-finite values, or all values equal.
fn kth_key_by_histogram(dist_sq: &[f32], k: usize) -> Option<u64> {
    if dist_sq.len() < SELECTION_BINS {
        return None;
    }
    let (low, high) = floored_range(dist_sq);
    if !(low.is_finite() && high.is_finite()) || high <= low {
        return None;
    }
    // Clamped to [0, 255] and rounded to the nearest integer by adding 2^23, whose low mantissa
    // bits then hold it: monotone, and it vectorizes where a float-to-int cast does not.
    let scale = (SELECTION_BINS - 1) as f32 / (high - low);
    let bins: Vec<u8> = dist_sq
        .iter()
        .map(|&d| {
            let x = (d - low) * scale;
            let x = if x > 255.0 { 255.0 } else { x };
            let x = if x < 0.0 { 0.0 } else { x };
            (x + 8_388_608.0).to_bits() as u8
        })
        .collect();
    let mut counts = [0u32; SELECTION_BINS];
    for &b in &bins {
        counts[usize::from(b)] += 1;
    }
    let mut below = 0usize;
    let mut target = 0u8;
    for (b, &count) in counts.iter().enumerate() {
        if below + count as usize >= k {
            target = b as u8;
            break;
        }
        below += count as usize;
    }
    // Chunks of 32 are tested at once (it vectorizes); only the few holding members are walked.
    let mut members = Vec::with_capacity(counts[usize::from(target)] as usize);
    for (chunk_index, chunk) in bins.chunks(32).enumerate() {
        if chunk.iter().fold(false, |hit, &b| hit | (b == target)) {
            let first = chunk_index * 32;
            for (offset, &b) in chunk.iter().enumerate() {
                if b == target {
                    members.push(order_key(first + offset, dist_sq[first + offset]));
                }
            }
        }
    }
    let rank = k.checked_sub(below + 1)?;
    members.get(rank)?;
    Some(*members.select_nth_unstable(rank).1)
}

/// Minimum and maximum of the distances floored at 0, NaN counting as infinity; in eight lanes
/// so it vectorizes.
fn floored_range(dist_sq: &[f32]) -> (f32, f32) {
    let (mut low, mut high, mut poison) = ([f32::INFINITY; 8], [0.0f32; 8], [0.0f32; 8]);
    let mut chunks = dist_sq.chunks_exact(8);
    for chunk in &mut chunks {
        for j in 0..8 {
            let d = chunk[j];
            // NaN, and infinity times zero, stay NaN: the non-finite test without a branch.
            poison[j] += d * 0.0;
            low[j] = if d < low[j] { d } else { low[j] };
            high[j] = if d > high[j] { d } else { high[j] };
        }
    }
    for &d in chunks.remainder() {
        poison[0] += d * 0.0;
        low[0] = if d < low[0] { d } else { low[0] };
        high[0] = if d > high[0] { d } else { high[0] };
    }
    if poison.iter().any(|p| p.is_nan()) {
        return (0.0, f32::INFINITY);
    }
    let low = low.iter().fold(f32::INFINITY, |a, &b| a.min(b)).max(0.0);
    (low, high.iter().fold(0.0f32, |a, &b| a.max(b)))
}

/// The order key of a distance: NaN last (as infinity), rounding below zero as zero.
#[inline]
fn distance_bits(d: f32) -> u32 {
    if d.is_nan() {
        f32::INFINITY.to_bits()
    } else if d <= 0.0 {
        0
    } else {
        d.to_bits()
    }
}

/// Settles a [`KthSelection::Tied`]: ranks `candidates` by their `f64` squared distance to
/// `query` (`row(r)` gives candidate `r`'s values), ties by lower index, and returns the row of
/// rank `k - below` (1-based).
pub fn resolve_kth_tie<'a>(
    below: usize,
    candidates: &[usize],
    k: usize,
    query: &[f32],
    row: impl Fn(usize) -> &'a [f32],
) -> usize {
    let mut ranked: Vec<(f64, usize)> = candidates
        .iter()
        .map(|&r| {
            let dist =
                query.iter().zip(row(r)).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>();
            (dist, r)
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let rank = k.saturating_sub(below + 1).min(ranked.len().saturating_sub(1));
    ranked.get(rank).map_or(0, |&(_, r)| r)
}

impl Tensor {
    /// For queries `self` `[m, d]`, a class bank `[c, s, d]` whose class `i` holds `counts[i]`
    /// valid rows, and requests `targets` of `(query row, class)`: the flat row index
    /// `class * s + r` (`I64`, `[targets.len()]`) of the `min(k, counts[class])`-th nearest valid
    /// row `r` of that class by Euclidean distance, exact in the sense of the module docs.
    ///
    /// Provided: the generic version is a batched matrix product plus a host-side selection;
    /// backends may fuse it ([`TensorImpl::fused_class_kth_nearest`](super::TensorImpl::fused_class_kth_nearest)). No
    /// gradient (indices).
    pub fn class_kth_nearest(
        &self,
        bank: &Tensor,
        counts: &[usize],
        targets: &[(usize, usize)],
        k: usize,
    ) -> Result<Tensor> {
        let (m, classes, capacity, dim) = class_bank_shape("class_kth_nearest", self, bank, counts)?;
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
        if let Some(fused) = self.inner().fused_class_kth_nearest(bank, counts, targets, k) {
            return fused;
        }
        if targets.is_empty() {
            return self.backend().from_i64(&[], &[0]);
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
        let backend = self.backend();
        let queries = self
            .index_select(0, &backend.from_i64(&rows, &[rows.len()])?)?
            .reshape(&[classes, width, dim])?;
        let dots = bank.matmul(&queries.transpose(1, 2)?)?.transpose(1, 2)?;
        let bank_sq = bank.sqr()?.sum(2, true)?.transpose(1, 2)?;
        let query_sq = queries.sqr()?.sum(2, true)?;
        let dist_sq = dots.scale(-2.0)?.add(&bank_sq)?.add(&query_sq)?.to_vec_f32()?;
        let host_queries = self.to_vec_f32()?;
        let query_sq =
            |row: usize| host_queries[row * dim..(row + 1) * dim].iter().map(|x| x * x).sum::<f32>();

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
            let fetched =
                flat_bank.index_select(0, &backend.from_i64(&flat, &[flat.len()])?)?.to_vec_f32()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_kth_matches_a_sort() {
        let values: Vec<f32> = (0..257).map(|i| ((i * 7919) % 1009) as f32 / 300.0).collect();
        let mut sorted: Vec<(f32, usize)> = values.iter().copied().zip(0..).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for k in [1, 2, 100, 257] {
            assert_eq!(select_kth(&values, k, 1.0), KthSelection::Unique(sorted[k - 1].1), "k = {k}");
        }
    }

    #[test]
    fn selection_matches_a_sort_with_nan_and_rounding() {
        let mut values: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1013) as f32 / 250.0).collect();
        values[17] = f32::NAN;
        values[400] = -1e-7;
        values[401] = values[3];
        values[402] = f32::NEG_INFINITY;
        values[403] = f32::INFINITY;
        let mut sorted: Vec<(f32, usize)> =
            values.iter().map(|&d| f32::from_bits(distance_bits(d))).zip(0..).collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for k in [1, 2, 199, 200, 500, 999, 1000] {
            let want = sorted[k - 1].1;
            match select_kth(&values, k, 1.0) {
                KthSelection::Unique(r) => assert_eq!(r, want, "k = {k}"),
                KthSelection::Tied { candidates, .. } => assert!(candidates.contains(&want), "k = {k}"),
            }
        }
    }

    #[test]
    fn histogram_selection_agrees_with_quickselect() {
        let mut state = 12_345u64;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        for trial in 0..60 {
            let n = 256 + trial * 37;
            // Clustered values, coarse duplicates, a few negatives from rounding.
            let mut values: Vec<f32> = (0..n).map(|_| 1.0 + next() * next()).collect();
            for i in (0..n).step_by(7) {
                values[i] = (values[i] * 64.0).round() / 64.0;
            }
            values[trial % n] = -1e-7;
            values[(trial * 13) % n] = 0.0;
            for k in [1, 2, n / 5, n / 2, n - 1, n] {
                let want = kth_key_by_quickselect(&values, k);
                assert_eq!(kth_key_by_histogram(&values, k), Some(want), "n = {n}, k = {k}");
            }
        }
        assert_eq!(kth_key_by_histogram(&[0.5; 300], 7), None, "all equal: quickselect decides");
        let mut with_nan = vec![0.5f32; 300];
        with_nan[3] = f32::NAN;
        assert_eq!(kth_key_by_histogram(&with_nan, 7), None, "non-finite: quickselect decides");
    }

    #[test]
    #[ignore = "timing, run by hand with --release"]
    fn selection_speed() {
        let values: Vec<f32> =
            (0..1000u64).map(|i| ((i * 2_654_435_761) % 100_003) as f32 / 25_000.0).collect();
        let start = std::time::Instant::now();
        let mut sink = 0;
        for round in 0..20_000 {
            if let KthSelection::Unique(r) = select_kth(&values, 150 + round % 100, 1.0) {
                sink += r;
            }
        }
        println!("select_kth: {:.2} us ({sink})", start.elapsed().as_secs_f64() / 20_000.0 * 1e6);
    }

    #[test]
    fn an_empty_class_has_no_kth_instead_of_a_panic() {
        assert_eq!(select_kth(&[], 3, 1.0), KthSelection::Tied { below: 0, candidates: Vec::new() });
    }

    #[test]
    fn near_ties_are_settled_in_f64() {
        // Rows 0 and 1 are at f32 distances that tie, but row 1 is nearer in f64.
        let query = [1.0f32, 0.0];
        let rows = [[0.0f32, 1.0], [1.0e-8, 1.0], [5.0, 5.0]];
        let dist: Vec<f32> =
            rows.iter().map(|r| (query[0] - r[0]).powi(2) + (query[1] - r[1]).powi(2)).collect();
        let KthSelection::Tied { below, candidates } = select_kth(&dist, 1, 1.0) else {
            panic!("expected a tie among {dist:?}");
        };
        assert_eq!((below, candidates.clone()), (0, vec![0, 1]));
        assert_eq!(resolve_kth_tie(below, &candidates, 1, &query, |r| &rows[r][..]), 1);
        assert_eq!(resolve_kth_tie(below, &candidates, 2, &query, |r| &rows[r][..]), 0);
    }

    #[test]
    fn nan_sorts_last_and_negative_rounding_counts_as_zero() {
        let dist = [f32::NAN, -1e-7, 0.5, 2.0];
        assert_eq!(select_kth(&dist, 1, 1.0), KthSelection::Unique(1));
        assert_eq!(select_kth(&dist, 3, 1.0), KthSelection::Unique(3));
        assert_eq!(select_kth(&dist, 4, 1.0), KthSelection::Unique(0));
    }
}
