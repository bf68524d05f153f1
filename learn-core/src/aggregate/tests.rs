use proptest::prelude::*;
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

use super::*;

fn run(rule: Rule, updates: &[(u64, Vec<f32>)]) -> Result<Vec<f32>, AggregateError> {
    let refs: Vec<(u64, &[f32])> = updates.iter().map(|(c, w)| (*c, w.as_slice())).collect();
    aggregate(rule, &refs)
}

fn ones(values: &[f32]) -> Vec<(u64, Vec<f32>)> {
    values.iter().map(|&v| (1, vec![v])).collect()
}

fn random_updates(seed: u64, n: usize, dim: usize) -> Vec<(u64, Vec<f32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let count = rng.random_range(1..1000u64);
            let w = (0..dim).map(|_| rng.random_range(-3.0f32..3.0)).collect();
            (count, w)
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const ALL_RULES: [Rule; 5] = [
    Rule::FedAvg,
    Rule::Median,
    Rule::TrimmedMean { trim: 0.2 },
    Rule::TrimmedMean { trim: 0.0 },
    Rule::MultiKrum { f: 1, m: 3 },
];

#[test]
fn fedavg_weights_by_sample_count() {
    let out = run(Rule::FedAvg, &[(1, vec![0.0, 0.0]), (3, vec![4.0, 8.0])]).unwrap();
    assert_eq!(out, vec![3.0, 6.0]);
    // A participant that trained on nothing contributes nothing.
    let out = run(Rule::FedAvg, &[(0, vec![1000.0]), (5, vec![2.0])]).unwrap();
    assert_eq!(out, vec![2.0]);
}

#[test]
fn median_of_known_columns() {
    assert_eq!(
        run(Rule::Median, &ones(&[5.0, -1.0, 3.0])).unwrap(),
        vec![3.0]
    );
    assert_eq!(
        run(Rule::Median, &ones(&[4.0, 1.0, 100.0, 2.0])).unwrap(),
        vec![3.0]
    );
    let out = run(
        Rule::Median,
        &[
            (9, vec![1.0, 10.0]),
            (1, vec![2.0, 30.0]),
            (1, vec![3.0, 20.0]),
        ],
    )
    .unwrap();
    // Per coordinate, and regardless of sample counts.
    assert_eq!(out, vec![2.0, 20.0]);
}

#[test]
fn trimmed_mean_of_known_columns() {
    let values = ones(&[1.0, 2.0, 3.0, 100.0, -50.0]);
    // floor(0.2 · 5) = 1 value dropped per side: mean of 1, 2, 3.
    assert_eq!(
        run(Rule::TrimmedMean { trim: 0.2 }, &values).unwrap(),
        vec![2.0]
    );
    // floor(0.19 · 5) = 0: the plain mean.
    assert_eq!(
        run(Rule::TrimmedMean { trim: 0.19 }, &values).unwrap(),
        vec![11.2]
    );
    // 0.4 · 5 = 2 per side: only the median remains.
    assert_eq!(
        run(Rule::TrimmedMean { trim: 0.4 }, &values).unwrap(),
        vec![2.0]
    );
}

#[test]
fn multi_krum_keeps_the_clustered_updates() {
    let values = ones(&[100.0, 3.0, 1.0, 0.0, 2.0]);
    // n = 5, f = 1: scores sum the 2 nearest squared distances:
    // 0 → 1+4 = 5, 1 → 2, 2 → 2, 3 → 5, 100 → huge.
    assert_eq!(
        run(Rule::MultiKrum { f: 1, m: 2 }, &values).unwrap(),
        vec![1.5]
    );
    // The tie between 0 and 3 goes to the one first in canonical order, the
    // one whose weights hash is smaller.
    let first = if crate::model_hash(&[0.0]) < crate::model_hash(&[3.0]) {
        1.0
    } else {
        2.0
    };
    assert_eq!(
        run(Rule::MultiKrum { f: 1, m: 3 }, &values).unwrap(),
        vec![first]
    );
    // m larger than n is capped: everything is averaged.
    assert_eq!(
        run(Rule::MultiKrum { f: 1, m: 50 }, &values).unwrap(),
        vec![21.2]
    );
}

#[test]
fn bad_inputs_give_typed_errors() {
    assert_eq!(run(Rule::FedAvg, &[]), Err(AggregateError::NoUpdates));
    assert_eq!(
        run(Rule::Median, &[(1, vec![1.0, 2.0]), (1, vec![1.0])]),
        Err(AggregateError::ShapeMismatch {
            index: 1,
            expected: 2,
            actual: 1
        })
    );
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert_eq!(
            run(Rule::Median, &[(1, vec![1.0, 2.0]), (1, vec![3.0, bad])]),
            Err(AggregateError::NonFinite { index: 1 })
        );
    }
    assert_eq!(
        run(Rule::FedAvg, &[(0, vec![1.0]), (0, vec![2.0])]),
        Err(AggregateError::NoSamples)
    );
    assert_eq!(
        run(Rule::MultiKrum { f: 2, m: 1 }, &ones(&[1.0, 2.0, 3.0, 4.0])),
        Err(AggregateError::TooFewUpdates {
            rule: Rule::MultiKrum { f: 2, m: 1 },
            needed: 5,
            got: 4
        })
    );
    assert!(matches!(
        run(Rule::TrimmedMean { trim: 0.5 }, &ones(&[1.0])),
        Err(AggregateError::InvalidRule { .. })
    ));
    assert!(matches!(
        run(
            Rule::MultiKrum {
                f: usize::MAX,
                m: 1
            },
            &ones(&[1.0])
        ),
        Err(AggregateError::TooFewUpdates { .. })
    ));
}

/// Straightforward `f64` versions of the rules, to check the blocked,
/// parallel ones against.
fn reference(rule: Rule, updates: &[(u64, Vec<f32>)]) -> Vec<f64> {
    let n = updates.len();
    let dim = updates[0].1.len();
    let column = |j: usize| {
        let mut c: Vec<f64> = updates.iter().map(|(_, w)| f64::from(w[j])).collect();
        c.sort_by(f64::total_cmp);
        c
    };
    match rule {
        Rule::FedAvg => {
            let total: f64 = updates.iter().map(|(c, _)| *c as f64).sum();
            (0..dim)
                .map(|j| {
                    updates
                        .iter()
                        .map(|(c, w)| *c as f64 * f64::from(w[j]))
                        .sum::<f64>()
                        / total
                })
                .collect()
        }
        Rule::Median => (0..dim)
            .map(|j| {
                let c = column(j);
                if n % 2 == 1 {
                    c[n / 2]
                } else {
                    (c[n / 2 - 1] + c[n / 2]) / 2.0
                }
            })
            .collect(),
        Rule::TrimmedMean { trim } => {
            let k = (f64::from(trim) * n as f64).floor() as usize;
            (0..dim)
                .map(|j| column(j)[k..n - k].iter().sum::<f64>() / (n - 2 * k) as f64)
                .collect()
        }
        Rule::MultiKrum { f, m } => {
            let d = |a: &[f32], b: &[f32]| -> f64 {
                a.iter()
                    .zip(b)
                    .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                    .sum()
            };
            let mut scores: Vec<(f64, usize)> = (0..n)
                .map(|i| {
                    let mut row: Vec<f64> = (0..n)
                        .filter(|&j| j != i)
                        .map(|j| d(&updates[i].1, &updates[j].1))
                        .collect();
                    row.sort_by(f64::total_cmp);
                    (row[..n - f - 2].iter().sum(), i)
                })
                .collect();
            scores.sort_by(|a, b| a.0.total_cmp(&b.0));
            let chosen: Vec<usize> = scores[..m].iter().map(|s| s.1).collect();
            (0..dim)
                .map(|j| {
                    chosen
                        .iter()
                        .map(|&i| f64::from(updates[i].1[j]))
                        .sum::<f64>()
                        / m as f64
                })
                .collect()
        }
    }
}

#[test]
fn blocked_parallel_results_match_the_reference_across_block_boundaries() {
    // More than one Krum segment (65,536) and many coordinate blocks (4,096).
    let updates = random_updates(7, 7, 70_001);
    for rule in ALL_RULES {
        let got = run(rule, &updates).unwrap();
        let want = reference(rule, &updates);
        for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (f64::from(g) - w).abs() <= 1e-5,
                "{rule} coordinate {j}: {g} vs {w}"
            );
        }
    }
}

#[test]
fn thread_count_does_not_change_a_bit() {
    let updates = random_updates(11, 9, 70_001);
    for rule in ALL_RULES {
        let with = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| run(rule, &updates).unwrap())
        };
        let one = bits(&with(1));
        assert_eq!(one, bits(&with(2)), "{rule}");
        assert_eq!(one, bits(&with(3)), "{rule}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_permutation_gives_bit_identical_models(
        (updates, shuffled) in (3usize..12, 1usize..40, any::<u64>())
            .prop_map(|(n, dim, seed)| random_updates(seed, n, dim))
            .prop_flat_map(|u| (Just(u.clone()), Just(u).prop_shuffle())),
    ) {
        for rule in ALL_RULES {
            let a = run(rule, &updates);
            let b = run(rule, &shuffled);
            match (a, b) {
                (Ok(a), Ok(b)) => prop_assert_eq!(bits(&a), bits(&b), "{}", rule),
                (a, b) => prop_assert_eq!(a, b),
            }
        }
    }

    #[test]
    fn duplicated_inputs_with_wild_values_stay_order_independent(
        values in prop::collection::vec(prop::num::f32::NORMAL | prop::num::f32::ZERO, 4..10),
        rotate in 0usize..10,
    ) {
        // Few distinct magnitudes, exact duplicates and ±0: the cases where a
        // sort that is not total, or a sum in arrival order, would show.
        let updates: Vec<(u64, Vec<f32>)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (1 + (i % 2) as u64, vec![v, -v, v * 0.5, values[0]]))
            .collect();
        let mut rotated = updates.clone();
        rotated.rotate_left(rotate % updates.len());
        rotated.reverse();
        for rule in ALL_RULES {
            let a = run(rule, &updates).map(|v| bits(&v));
            let b = run(rule, &rotated).map(|v| bits(&v));
            prop_assert_eq!(a, b, "{}", rule);
        }
    }
}
