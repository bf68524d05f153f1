//! Multi-Krum: keep the updates that sit closest to their neighbours.
//!
//! The cost is the `n(n−1)/2` pairwise squared distances, `O(n²·d)`. They are
//! computed cache-blocked: a block of [`BLOCK`] coordinates of all `n` updates
//! (200 KB at `n = 100`, half the L2 cache of the development machine) stays in the core's cache while every pair is
//! visited, four partners per pass over the first vector. Parallel work items
//! are fixed segments of [`SEGMENT`] coordinates whose per-pair partial sums
//! are added in segment order, so the distances — and hence the selection —
//! are the same for any thread count.

use rayon::prelude::*;

use crate::kernel::{BLOCK, sq_distance, sq_distances};

/// Coordinates per parallel work item (a constant: see the module doc).
const SEGMENT: usize = 64 * BLOCK;
/// Partners per pass over the first vector of a pair.
const GROUP: usize = 4;

/// Multi-Krum over `weights` (canonically ordered, each of length `dim`):
/// the uniform mean of the `m` updates with the lowest Krum scores, where a
/// score is the sum of squared distances to the `n − f − 2` nearest other
/// updates. Requires `n ≥ f + 3` and `1 ≤ m ≤ n`. Ties in score go to the
/// update earlier in canonical order.
pub(crate) fn multi_krum(weights: &[&[f32]], dim: usize, f: usize, m: usize) -> Vec<f32> {
    let selected = select(weights, dim, f, m);
    let chosen: Vec<&[f32]> = selected.iter().map(|&i| weights[i]).collect();
    super::mean(&chosen, dim)
}

/// The indices (ascending) of the `m` best-scored updates.
pub(crate) fn select(weights: &[&[f32]], dim: usize, f: usize, m: usize) -> Vec<usize> {
    let n = weights.len();
    debug_assert!(n >= f + 3 && (1..=n).contains(&m));
    let dist = pairwise_sq_distances(weights, dim);
    let neighbours = n - f - 2;
    let mut scored: Vec<(f64, usize)> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n)
                .filter(|&j| j != i)
                .map(|j| dist[i.min(j) * n + i.max(j)])
                .collect();
            row.sort_unstable_by(f64::total_cmp);
            (row[..neighbours].iter().sum::<f64>(), i)
        })
        .collect();
    scored.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut chosen: Vec<usize> = scored[..m].iter().map(|&(_, i)| i).collect();
    chosen.sort_unstable();
    chosen
}

/// Squared distances of all pairs: entry `i·n + j` for `i < j` (the rest is
/// zero).
fn pairwise_sq_distances(weights: &[&[f32]], dim: usize) -> Vec<f64> {
    let n = weights.len();
    let segments: Vec<usize> = (0..dim).step_by(SEGMENT).collect();
    let partials: Vec<Vec<f64>> = segments
        .par_iter()
        .map(|&lo| {
            let hi = (lo + SEGMENT).min(dim);
            let mut partial = vec![0f64; n * n];
            for block_lo in (lo..hi).step_by(BLOCK) {
                let block = block_lo..(block_lo + BLOCK).min(hi);
                add_block(weights, block, &mut partial);
            }
            partial
        })
        .collect();
    let mut total = vec![0f64; n * n];
    for partial in partials {
        for (t, p) in total.iter_mut().zip(partial) {
            *t += p;
        }
    }
    total
}

/// Adds the squared distances of every pair over the coordinates in `block`.
fn add_block(weights: &[&[f32]], block: std::ops::Range<usize>, out: &mut [f64]) {
    let n = weights.len();
    for i in 0..n {
        let a = &weights[i][block.clone()];
        let row = &mut out[i * n..(i + 1) * n];
        let mut j = i + 1;
        while j + GROUP <= n {
            let b: [&[f32]; GROUP] = std::array::from_fn(|k| &weights[j + k][block.clone()]);
            for (k, d) in sq_distances(a, b).into_iter().enumerate() {
                row[j + k] += d;
            }
            j += GROUP;
        }
        for j in j..n {
            row[j] += sq_distance(a, &weights[j][block.clone()]);
        }
    }
}
