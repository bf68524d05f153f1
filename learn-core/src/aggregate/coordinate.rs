//! Coordinate-wise robust rules: median and trimmed mean.
//!
//! Both look at one coordinate at a time across all `n` updates. The values
//! of [`ROW`] consecutive coordinates are copied into `n` rows, and a sorting
//! network (see [`network`](super::network)) runs over the rows: each
//! compare-exchange is a `min`/`max` of two rows, which the compiler turns
//! into SIMD instructions across coordinates. Afterwards row `r` holds the
//! rank-`r` value of every coordinate in the tile, whatever order the updates
//! came in: a network's output is a function of the input multiset, because
//! `min` and `max` are (negative zeros are turned into positive ones first,
//! the only finite values that compare equal with different bits).
//!
//! Tiles are grouped into parallel work items of [`COORD_BLOCK`] coordinates;
//! each coordinate is computed on its own, so the thread count cannot matter.

use std::ops::Range;

use rayon::prelude::*;

use super::COORD_BLOCK;
use super::network::{self, Comparator};

/// Coordinates per tile: 100 rows of 64 floats (25 KB) stay in L1.
const ROW: usize = 64;

type Row = [f32; ROW];

/// The coordinate-wise median of `weights` (each of length `dim`, at least
/// one): the middle value, or the mean of the two middle values for an even
/// count.
pub(crate) fn median(weights: &[&[f32]], dim: usize) -> Vec<f32> {
    let n = weights.len();
    let (lo, hi) = ((n - 1) / 2, n / 2);
    by_rank(weights, dim, lo..hi + 1, |rows, out| {
        for (j, o) in out.iter_mut().enumerate() {
            *o = if lo == hi {
                rows[lo][j]
            } else {
                ((f64::from(rows[lo][j]) + f64::from(rows[hi][j])) / 2.0) as f32
            };
        }
    })
}

/// The coordinate-wise mean of `weights` after dropping the `per_side`
/// smallest and `per_side` largest values of each coordinate
/// (`2 · per_side < weights.len()`). The kept values are summed in rank
/// order in `f64`.
pub(crate) fn trimmed_mean(weights: &[&[f32]], dim: usize, per_side: usize) -> Vec<f32> {
    let n = weights.len();
    debug_assert!(2 * per_side < n);
    let kept = per_side..n - per_side;
    let count = kept.len() as f64;
    by_rank(weights, dim, kept.clone(), |rows, out| {
        let mut sum = [0f64; ROW];
        for row in &rows[kept.clone()] {
            for (s, &x) in sum.iter_mut().zip(row) {
                *s += f64::from(x);
            }
        }
        for (o, s) in out.iter_mut().zip(sum) {
            *o = (s / count) as f32;
        }
    })
}

/// Sorts every coordinate's column far enough to fix the values at `ranks`,
/// then fills each tile's outputs with `reduce(rows, out)` (output `j` is
/// column `j` of the rows).
fn by_rank<F>(weights: &[&[f32]], dim: usize, ranks: Range<usize>, reduce: F) -> Vec<f32>
where
    F: Fn(&[Row], &mut [f32]) + Sync,
{
    let n = weights.len();
    let network = network::pruned_for(&network::batcher(n), n, ranks);
    let mut out = vec![0f32; dim];
    out.par_chunks_mut(COORD_BLOCK).enumerate().for_each_init(
        || vec![[0f32; ROW]; n],
        |rows, (block, out)| {
            let block_lo = block * COORD_BLOCK;
            for (tile, out) in out.chunks_mut(ROW).enumerate() {
                let lo = block_lo + tile * ROW;
                load_tile(rows, weights, lo, out.len());
                sort_tile(rows, &network);
                reduce(rows, out);
            }
        },
    );
    out
}

/// Copies coordinates `lo..lo + len` of every update into the rows, turning
/// `-0.0` into `0.0` (adding `0.0` does exactly that and changes nothing
/// else). Columns past `len` in a short last tile are zeroed and ignored.
fn load_tile(rows: &mut [Row], weights: &[&[f32]], lo: usize, len: usize) {
    for (row, w) in rows.iter_mut().zip(weights) {
        for (r, &x) in row.iter_mut().zip(&w[lo..lo + len]) {
            *r = x + 0.0;
        }
        row[len..].fill(0.0);
    }
}

/// Runs the network over the rows, all columns at once. Kept out of line so
/// that its vectorisation does not depend on the caller's inlining (see
/// `kernel::sq_distance`).
#[inline(never)]
fn sort_tile(rows: &mut [Row], network: &[Comparator]) {
    for &(a, b) in network {
        let (head, tail) = rows.split_at_mut(b as usize);
        let (low, high) = (&mut head[a as usize], &mut tail[0]);
        for (x, y) in low.iter_mut().zip(high.iter_mut()) {
            let (u, v) = (*x, *y);
            // Plain comparisons (not f32::min) compile to single SIMD
            // min/max instructions; inputs are finite, so NaN rules are moot.
            *x = if u < v { u } else { v };
            *y = if u > v { u } else { v };
        }
    }
}
