//! Sorting networks: a fixed sequence of compare-exchanges that sorts any
//! input of a given length.
//!
//! The coordinate-wise rules sort one column of values per coordinate. A
//! network's sequence does not depend on the data, so the same
//! compare-exchange runs on many coordinates at once (a SIMD `min`/`max` over
//! a row of coordinates), and the sorted result is a function of the column's
//! multiset alone — the order in which updates arrived cannot show.

use std::ops::Range;

/// One compare-exchange: afterwards position `.0` holds the smaller value and
/// `.1` the larger (`.0 < .1`).
pub(crate) type Comparator = (u32, u32);

/// Batcher's odd–even merge sort for `n` inputs.
///
/// For a power of two this is Batcher's network; for other `n` it is that
/// network for the next power of two with the comparators that touch
/// positions `≥ n` removed, which is still a sorting network (think of the
/// missing positions as holding +∞: such comparators never move anything).
/// About `n·log²(n)/4` comparators: 1,104 for `n = 100`.
pub(crate) fn batcher(n: usize) -> Vec<Comparator> {
    let mut out = Vec::new();
    let mut p = 1;
    while p < n {
        let mut k = p;
        while k >= 1 {
            let mut j = k % p;
            while j + k < n {
                for i in 0..k.min(n - j - k) {
                    let (lo, hi) = (i + j, i + j + k);
                    if lo / (2 * p) == hi / (2 * p) {
                        out.push((lo as u32, hi as u32));
                    }
                }
                j += 2 * k;
            }
            k /= 2;
        }
        p *= 2;
    }
    out
}

/// The comparators of `network` that can influence the values that end up
/// at the positions in `ranks`: enough to compute a median or a trimmed
/// mean without finishing the sort of the ranks nobody reads.
pub(crate) fn pruned_for(network: &[Comparator], n: usize, ranks: Range<usize>) -> Vec<Comparator> {
    let mut needed = vec![false; n];
    for r in ranks {
        needed[r] = true;
    }
    let mut kept: Vec<Comparator> = network
        .iter()
        .rev()
        .filter(|&&(a, b)| {
            let (a, b) = (a as usize, b as usize);
            let keep = needed[a] || needed[b];
            if keep {
                needed[a] = true;
                needed[b] = true;
            }
            keep
        })
        .copied()
        .collect();
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply<T: Ord + Copy>(network: &[Comparator], v: &mut [T]) {
        for &(a, b) in network {
            let (a, b) = (a as usize, b as usize);
            if v[a] > v[b] {
                v.swap(a, b);
            }
        }
    }

    #[test]
    fn batcher_sorts_every_zero_one_input_up_to_14() {
        // The 0-1 principle: a comparator network that sorts every 0/1
        // sequence sorts every sequence.
        for n in 0..=14usize {
            let network = batcher(n);
            assert!(network.iter().all(|&(a, b)| a < b && (b as usize) < n));
            for mask in 0u32..(1 << n) {
                let mut v: Vec<u32> = (0..n).map(|i| (mask >> i) & 1).collect();
                apply(&network, &mut v);
                assert!(v.is_sorted(), "n = {n}, input {mask:b}");
            }
        }
    }

    #[test]
    fn batcher_sorts_random_inputs_of_awkward_lengths() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for n in [15, 31, 33, 64, 99, 100, 101, 127, 129, 250] {
            let network = batcher(n);
            for _ in 0..50 {
                let mut v: Vec<u64> = (0..n)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state % 50
                    })
                    .collect();
                let mut want = v.clone();
                want.sort_unstable();
                apply(&network, &mut v);
                assert_eq!(v, want, "n = {n}");
            }
        }
        assert_eq!(batcher(100).len(), 1104);
    }

    #[test]
    fn pruned_networks_still_place_the_wanted_ranks() {
        let mut state = 12345u64;
        for (n, ranks) in [
            (100, 49..51),
            (101, 50..51),
            (100, 20..80),
            (7, 0..7),
            (9, 4..5),
        ] {
            let full = batcher(n);
            let pruned = pruned_for(&full, n, ranks.clone());
            assert!(pruned.len() <= full.len());
            for _ in 0..50 {
                let mut v: Vec<u64> = (0..n)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1);
                        (state >> 33) % 1000
                    })
                    .collect();
                let mut want = v.clone();
                want.sort_unstable();
                apply(&pruned, &mut v);
                assert_eq!(v[ranks.clone()], want[ranks.clone()], "n = {n}");
            }
        }
        assert!(pruned_for(&batcher(100), 100, 49..51).len() < 1000);
    }
}
