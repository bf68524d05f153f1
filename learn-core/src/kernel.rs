//! Numeric kernels with a summation order fixed by the code.
//!
//! Floating-point addition is not associative, so "the same sum" computed in
//! two orders can differ in the last bit, and two nodes would then hold
//! different models. Every reduction here therefore spells out its order:
//! a fixed number of lane accumulators, filled element `i` into lane
//! `i % LANES`, then combined lane by lane in index order. The compiler may
//! vectorise the lanes (they are independent) but may not reorder them, so
//! the result is the same on every machine, build and thread count.

/// Lanes of the `f32` distance kernel (four SSE2 or two AVX registers).
const LANES_F32: usize = 8;
/// Lanes of the `f64` norm kernel.
const LANES_F64: usize = 8;
/// Elements per `f32` partial sum in the distance kernels: small enough to
/// stay in a core's cache for all partners of a pair loop, and to keep each
/// `f32` lane's sum to 64 terms.
pub(crate) const BLOCK: usize = 512;

/// The squared Euclidean norm of `w`, accumulated in `f64`.
///
/// A finite `f32` squared is below 1.2e77, so for any vector shorter than
/// 1e230 elements the result is finite exactly when every element is: a
/// non-finite result means the vector holds a NaN or an infinity.
pub(crate) fn sq_norm(w: &[f32]) -> f64 {
    let mut acc = [0f64; LANES_F64];
    let mut chunks = w.chunks_exact(LANES_F64);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            let x = f64::from(x);
            *a += x * x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        let x = f64::from(x);
        *a += x * x;
    }
    acc.iter().sum()
}

/// The squared Euclidean distance between `a` and `b` (equal lengths),
/// accumulated in `f32` lanes and returned as `f64`.
///
/// Callers keep slices short (a cache block of about a thousand elements) and
/// add the per-block results in `f64`, so the `f32` lanes each sum only a few
/// dozen terms.
// Kept out of line: inlined into a large caller, LLVM has been seen to give
// up on vectorising the lanes (a 5x slowdown); on its own it never does.
#[inline(never)]
pub(crate) fn sq_distance(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES_F32];
    let (ca, ra) = a.as_chunks::<LANES_F32>();
    let (cb, rb) = b.as_chunks::<LANES_F32>();
    for (xa, xb) in ca.iter().zip(cb) {
        for l in 0..LANES_F32 {
            let d = xa[l] - xb[l];
            acc[l] += d * d;
        }
    }
    for ((s, &x), &y) in acc.iter_mut().zip(ra).zip(rb) {
        let d = x - y;
        *s += d * d;
    }
    acc.iter().map(|&s| f64::from(s)).sum()
}

/// The squared distances from `a` to each of four vectors at once.
///
/// Loading `a` once for four partners cuts the loads of the pairwise-distance
/// loop nearly in half. Each of the four results is accumulated exactly as
/// [`sq_distance`] would, so grouping partners never changes a result.
#[inline(never)]
pub(crate) fn sq_distances<const G: usize>(a: &[f32], b: [&[f32]; G]) -> [f64; G] {
    debug_assert!(b.iter().all(|v| v.len() == a.len()));
    let mut acc = [[0f32; LANES_F32]; G];
    let (ca, ra) = a.as_chunks::<LANES_F32>();
    let cb = b.map(|v| v.as_chunks::<LANES_F32>().0);
    for (c, xa) in ca.iter().enumerate() {
        for (s, v) in acc.iter_mut().zip(&cb) {
            let xb = &v[c];
            for l in 0..LANES_F32 {
                let d = xa[l] - xb[l];
                s[l] += d * d;
            }
        }
    }
    let full = a.len() - ra.len();
    for (s, v) in acc.iter_mut().zip(&b) {
        for ((s, &x), &y) in s.iter_mut().zip(ra).zip(&v[full..]) {
            let d = x - y;
            *s += d * d;
        }
    }
    acc.map(|s| s.iter().map(|&x| f64::from(x)).sum())
}

/// The squared distance between `a` and `b` over their full length: the
/// [`sq_distance`] of each [`BLOCK`]-element block, added in `f64` in block
/// order, so long vectors keep `f64` accuracy.
pub(crate) fn sq_distance_blocked(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    a.chunks(BLOCK)
        .zip(b.chunks(BLOCK))
        .map(|(x, y)| sq_distance(x, y))
        .sum()
}

/// `acc[j] += weight * w[j]` for every `j`, in `f64`.
#[inline(never)]
pub(crate) fn axpy(acc: &mut [f64], weight: f64, w: &[f32]) {
    debug_assert_eq!(acc.len(), w.len());
    for (a, &x) in acc.iter_mut().zip(w) {
        *a += weight * f64::from(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 250.0
                    - 2.0
            })
            .collect()
    }

    #[test]
    fn norms_and_distances_match_naive_sums() {
        for n in [0, 1, 7, 16, 17, 1000, 1029] {
            let a = sample(n, 1);
            let b = sample(n, 2);
            let naive_norm: f64 = a.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            assert!((sq_norm(&a) - naive_norm).abs() <= 1e-9 * naive_norm.max(1.0));
            let naive_dist: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| f64::from(x - y) * f64::from(x - y))
                .sum();
            let d = sq_distance(&a, &b);
            assert!(
                (d - naive_dist).abs() <= 1e-5 * naive_dist.max(1.0),
                "{d} vs {naive_dist}"
            );
        }
    }

    #[test]
    fn grouped_distances_are_bit_identical_to_single_ones() {
        for n in [5, 16, 100, 1024, 1031] {
            let a = sample(n, 3);
            let bs: Vec<Vec<f32>> = (0..4).map(|k| sample(n, 10 + k)).collect();
            let four = sq_distances(&a, [&bs[0], &bs[1], &bs[2], &bs[3]]);
            for (k, b) in bs.iter().enumerate() {
                assert_eq!(four[k].to_bits(), sq_distance(&a, b).to_bits());
            }
        }
    }

    #[test]
    fn non_finite_values_make_the_norm_non_finite() {
        let mut w = vec![3.0e38f32; 1000];
        assert!(sq_norm(&w).is_finite());
        w[500] = f32::NAN;
        assert!(!sq_norm(&w).is_finite());
        w[500] = f32::NEG_INFINITY;
        assert!(!sq_norm(&w).is_finite());
    }
}
