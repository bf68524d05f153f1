//! Robust rules against Byzantine participants: with 20 % of the updates
//! sign-flipped or scaled 10×, the robust rules stay close to the truth while
//! plain FedAvg is dragged away.

use mc_learn_core::aggregate::{Rule, aggregate};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

const N: usize = 50;
const BYZANTINE: usize = N / 5;
const DIM: usize = 2_000;

#[derive(Clone, Copy, Debug)]
enum Attack {
    None,
    SignFlip,
    Scale10,
    /// Half flip, half scale.
    Mixed,
}

/// The true model, and `N` updates: honest ones are the truth plus uniform
/// noise of ±0.1 per coordinate; the first `BYZANTINE` are attacked.
fn scenario(attack: Attack, seed: u64) -> (Vec<f32>, Vec<Vec<f32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let truth: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let updates = (0..N)
        .map(|i| {
            let honest: Vec<f32> = truth
                .iter()
                .map(|t| t + rng.random_range(-0.1f32..0.1))
                .collect();
            let factor = match (attack, i < BYZANTINE) {
                (_, false) | (Attack::None, _) => 1.0,
                (Attack::SignFlip, true) => -1.0,
                (Attack::Scale10, true) => 10.0,
                (Attack::Mixed, true) if i % 2 == 0 => -1.0,
                (Attack::Mixed, true) => 10.0,
            };
            honest.into_iter().map(|w| w * factor).collect()
        })
        .collect();
    (truth, updates)
}

/// ‖model − truth‖ / ‖truth‖.
fn relative_error(rule: Rule, truth: &[f32], updates: &[Vec<f32>]) -> f64 {
    let inputs: Vec<(u64, &[f32])> = updates.iter().map(|w| (100, w.as_slice())).collect();
    let model = aggregate(rule, &inputs).unwrap();
    let sq = |it: &mut dyn Iterator<Item = f64>| it.map(|x| x * x).sum::<f64>().sqrt();
    let err = sq(&mut model.iter().zip(truth).map(|(&m, &t)| f64::from(m - t)));
    err / sq(&mut truth.iter().map(|&t| f64::from(t)))
}

const ROBUST: [Rule; 3] = [
    Rule::Median,
    Rule::TrimmedMean { trim: 0.2 },
    Rule::MultiKrum {
        f: BYZANTINE,
        m: N - 2 * BYZANTINE,
    },
];

#[test]
fn every_rule_recovers_the_truth_without_attackers() {
    let (truth, updates) = scenario(Attack::None, 1);
    for rule in ROBUST.into_iter().chain([Rule::FedAvg]) {
        let e = relative_error(rule, &truth, &updates);
        assert!(e < 0.03, "{rule}: relative error {e:.4}");
    }
}

#[test]
fn robust_rules_resist_twenty_percent_attackers_and_fedavg_does_not() {
    for (seed, attack) in [Attack::SignFlip, Attack::Scale10, Attack::Mixed]
        .into_iter()
        .enumerate()
    {
        let (truth, updates) = scenario(attack, 10 + seed as u64);
        let fedavg = relative_error(Rule::FedAvg, &truth, &updates);
        // Flip: 0.8 − 0.2 = 0.6 of the truth; scale: 0.8 + 2.0 = 2.8; mixed: 1.7.
        assert!(fedavg > 0.35, "{attack:?}: FedAvg error only {fedavg:.3}");
        eprintln!("{attack:?}: fedavg {fedavg:.4}");
        for rule in ROBUST {
            let e = relative_error(rule, &truth, &updates);
            eprintln!("{attack:?}: {rule} {e:.4}");
            assert!(
                e < 0.1 && e * 4.0 < fedavg,
                "{attack:?}: {rule} error {e:.4} (FedAvg {fedavg:.3})"
            );
        }
    }
}

#[test]
fn multi_krum_keeping_n_minus_f_keeps_exactly_the_honest_updates() {
    // The attackers sit far from the honest cluster, so keeping n − f of n
    // updates must keep every honest one and no attacker: the result is
    // the plain mean of the honest updates. One attacker kept would move
    // each coordinate by about |t|/4 (sign flip) or 9|t|/40 (scaling).
    let (_, updates) = scenario(Attack::Mixed, 42);
    let inputs: Vec<(u64, &[f32])> = updates.iter().map(|w| (100, w.as_slice())).collect();
    let krum = aggregate(
        Rule::MultiKrum {
            f: BYZANTINE,
            m: N - BYZANTINE,
        },
        &inputs,
    )
    .unwrap();
    let honest_mean = aggregate(Rule::FedAvg, &inputs[BYZANTINE..]).unwrap();
    let worst = krum
        .iter()
        .zip(&honest_mean)
        .map(|(k, h)| (k - h).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-6,
        "largest difference from the honest mean {worst}"
    );
}
