use std::sync::Arc;

use mc_learn_core::plan::FINAL_RATE_FRACTION;
use mc_learn_core::plan::{StepPlan, pool_moments};
use mc_learn_core::update;

use super::*;

mod restart_and_catch_up;

const ROUNDS: u32 = 4;

/// Node `i`'s key (node 0 is the one under test).
fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i + 1; 32])
}

fn request(rule: Rule) -> CampaignRequest {
    CampaignRequest {
        model: mc_learn_core::schema::builtin_named("latency").unwrap(),
        rounds: ROUNDS,
        local_epochs: 2,
        batch_size: Some(64),
        learning_rate: Some(0.01),
        drift_correction: Some(false),
        final_rate_fraction: None,
        init: None,
        participants: (0..3)
            .map(|i| Participant {
                node: format!("n{i}"),
                key: hex::encode(key(i).verifying_key().to_bytes()),
            })
            .collect(),
        aggregation: rule,
        round_deadline_s: 10.0,
        seed: Some(5),
        max_update_norm: None,
    }
}

/// Node 0 declares and joins a campaign; returns its first job.
fn start(learning: &mut Learning, request: CampaignRequest) -> (CampaignId, TrainJob) {
    let (id, spec) = learning.declare(request, &NodeId::new("n0"), 0, 1).unwrap();
    let mut fx = Effects::default();
    learning.observe(vec![(id, spec)], 0, &mut fx);
    assert_eq!(fx.jobs.len(), 1);
    (id, fx.jobs.remove(0))
}

/// Every member's round result: node 0's through `on_trained`, the
/// others' signed and offered as if they came from the network. Returns
/// what the round's close produced.
fn play_round(
    learning: &mut Learning,
    id: CampaignId,
    round: u32,
    base: &[f32],
    results: [(Vec<f32>, u64); 3],
) -> Effects {
    let mut fx = Effects::default();
    for (i, (weights, count)) in results.into_iter().enumerate() {
        if i == 0 {
            let result = TrainResult {
                campaign: id,
                round,
                base: model_hash(base),
                outcome: Ok((weights, count)),
            };
            learning.on_trained(result, 1, &mut fx);
        } else {
            let signed =
                update::sign(&key(i as u8), id, round, model_hash(base), count, weights).unwrap();
            learning.offer(signed, 1, &mut fx, false).unwrap();
        }
    }
    fx
}

/// Moments of 7 features and a target, every column with `mean` and
/// variance 1.
fn moments(mean: f32) -> Vec<f32> {
    let mut v = vec![mean; 7];
    v.extend([mean * mean + 1.0; 7]);
    v.extend([mean, mean * mean + 1.0]);
    v
}

/// Equal up to rounding.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs()
}

fn update_job(fx: &mut Effects) -> (Arc<[f32]>, Arc<[f32]>, StepPlan) {
    assert_eq!(fx.jobs.len(), 1, "one job for the next round");
    match fx.jobs.remove(0).kind {
        TrainKind::Update {
            base,
            moments,
            plan,
            ..
        } => (base, moments, plan),
        TrainKind::Moments => panic!("expected a model round"),
    }
}

#[test]
fn every_member_runs_the_steps_of_the_median_member_at_a_decaying_rate() {
    let mut learning = Learning::new(key(0));
    let (id, job) = start(&mut learning, request(Rule::FedAvg));
    assert_eq!(job.kind, TrainKind::Moments);
    let mut fx = play_round(
        &mut learning,
        id,
        0,
        &[],
        [
            (moments(1.0), 300),
            (moments(2.0), 1000),
            (moments(3.0), 9000),
        ],
    );
    // 2 epochs of the median member's 1000 rows in batches of 64.
    let (mut base, _, plan) = update_job(&mut fx);
    assert_eq!(plan.steps, 2 * 1000u32.div_ceil(64));
    assert_eq!(plan.batch_size, 64);
    assert!(close(plan.learning_rate, 0.01), "{}", plan.learning_rate);
    let view = learning.view(&id.to_string()).unwrap();
    assert_eq!(view.reference_count, Some(1000));
    assert_eq!(view.local_steps, Some(32));
    assert!(view.round_learning_rate.is_some_and(|r| close(r, 0.01)));
    let mut plans = vec![plan];
    for round in 1..=ROUNDS {
        let step = |d: f32| (base.iter().map(|w| w + d).collect(), 100);
        let results = [step(0.001), step(0.002), step(0.003)];
        let mut fx = play_round(&mut learning, id, round, &base, results);
        if round == ROUNDS {
            assert!(fx.jobs.is_empty());
            assert_eq!(fx.finished.len(), 1);
        } else {
            let (next, _, plan) = update_job(&mut fx);
            plans.push(plan);
            base = next;
        }
    }
    assert!(plans.iter().all(|p| p.steps == 32 && p.batch_size == 64));
    let (first, last) = (
        plans[0].learning_rate,
        plans[ROUNDS as usize - 1].learning_rate,
    );
    assert!(
        last < first,
        "round {ROUNDS}'s rate {last} vs round 1's {first}"
    );
    assert!(close(last, 0.01 * DEFAULT_FINAL_RATE_FRACTION), "{last}");
    assert!(
        plans
            .windows(2)
            .all(|w| w[1].learning_rate < w[0].learning_rate)
    );
}

#[test]
fn robust_rules_pool_moments_with_the_spread_between_members() {
    let mut learning = Learning::new(key(0));
    let (id, _) = start(&mut learning, request(Rule::Median));
    let mut fx = play_round(
        &mut learning,
        id,
        0,
        &[],
        [
            (moments(0.0), 500),
            (moments(10.0), 500),
            (moments(20.0), 500),
        ],
    );
    let (_, pooled, _) = update_job(&mut fx);
    // Centre: the median mean, 10. Variance: the median of every
    // member's mean squared deviation from it (101, 1, 101), so the
    // mean square is 101 + 10². Separate medians of the means and of
    // the mean squares (1, 101, 401) would give variance 1.
    for j in 0..7 {
        assert_eq!(pooled[j], 10.0);
        assert!((pooled[7 + j] - 201.0).abs() < 1e-3, "{}", pooled[7 + j]);
    }
    assert!((pooled[15] - 201.0).abs() < 1e-3);
    let expected = pool_moments(
        Rule::Median,
        &[
            (500, &moments(0.0)),
            (500, &moments(10.0)),
            (500, &moments(20.0)),
        ],
    )
    .unwrap();
    assert_eq!(&pooled[..], &expected[..]);
    let view = learning.view(&id.to_string()).unwrap();
    assert_eq!(view.rounds[0].model_hash, model_hash(&pooled).to_string());
    assert_eq!(view.reference_count, Some(500));
}

#[test]
fn declarations_without_training_settings_take_the_defaults() {
    let learning = Learning::new(key(0));
    let (_, spec) = learning
        .declare(request(Rule::FedAvg), &NodeId::new("n0"), 0, 1)
        .unwrap();
    let mut json = serde_json::to_value(&spec).unwrap();
    let fields = json.as_object_mut().unwrap();
    assert!(fields.remove("batch_size").is_some());
    assert!(fields.remove("learning_rate").is_some());
    assert!(fields.remove("drift_correction").is_some());
    assert!(fields.remove("final_rate_fraction").is_some());
    assert!(fields.remove("init").is_some());
    let older: CampaignSpec = serde_json::from_value(json).unwrap();
    assert_eq!(older.final_rate_fraction, FINAL_RATE_FRACTION);
    assert_eq!(
        older.init,
        Init::HeUniform,
        "the start before it was a setting"
    );
    assert_eq!(older.batch_size, DEFAULT_CAMPAIGN_BATCH);
    assert_eq!(older.learning_rate, DEFAULT_CAMPAIGN_LR);
    // Campaigns declared before drift correction existed keep training
    // the way they started.
    assert!(!older.drift_correction);
    assert_eq!((older.rounds, older.seed), (spec.rounds, spec.seed));

    let mut unset = request(Rule::FedAvg);
    (
        unset.batch_size,
        unset.learning_rate,
        unset.drift_correction,
    ) = (None, None, None);
    let (_, spec) = learning.declare(unset, &NodeId::new("n0"), 0, 1).unwrap();
    assert_eq!(spec.batch_size, DEFAULT_CAMPAIGN_BATCH);
    assert_eq!(spec.learning_rate, DEFAULT_CAMPAIGN_LR);
    assert_eq!(spec.final_rate_fraction, DEFAULT_FINAL_RATE_FRACTION);
    assert_eq!(spec.init, DEFAULT_CAMPAIGN_INIT);
    assert!(spec.drift_correction, "on under FedAvg");
    let mut robust = request(Rule::Median);
    robust.drift_correction = None;
    let (_, spec) = learning.declare(robust, &NodeId::new("n0"), 0, 1).unwrap();
    assert!(!spec.drift_correction, "off under the median");
    let mut on = request(Rule::Median);
    on.drift_correction = Some(true);
    let (_, spec) = learning.declare(on, &NodeId::new("n0"), 0, 1).unwrap();
    assert!(spec.drift_correction, "a declaration can turn it on");
}

/// The job's correction (`None` for none).
fn correction_of(job: &TrainJob) -> Option<Vec<f32>> {
    match &job.kind {
        TrainKind::Update { correction, .. } => correction.as_deref().map(<[f32]>::to_vec),
        TrainKind::Moments => panic!("expected a model round"),
    }
}

#[test]
fn drift_correction_follows_the_federation_and_survives_a_restart() {
    let mut learning = Learning::new(key(0));
    let mut asked = request(Rule::FedAvg);
    asked.drift_correction = Some(true);
    let (id, _) = start(&mut learning, asked);
    let mut fx = play_round(
        &mut learning,
        id,
        0,
        &[],
        [
            (moments(1.0), 300),
            (moments(2.0), 1000),
            (moments(3.0), 9000),
        ],
    );
    let job = fx.jobs[0].clone();
    let (base, _, plan1) = update_job(&mut fx);
    assert_eq!(correction_of(&job), None, "nothing to correct in round 1");

    // Node 0 moves every weight by +0.03, the others by +0.01 and
    // −0.01; FedAvg (equal counts) moves the federation by +0.01.
    let moved = |d: f32| base.iter().map(|w| w + d).collect::<Vec<f32>>();
    let mut fx = play_round(
        &mut learning,
        id,
        1,
        &base,
        [(moved(0.03), 100), (moved(0.01), 100), (moved(-0.01), 100)],
    );
    let job = fx.jobs[0].clone();
    let (next, _, plan2) = update_job(&mut fx);
    let mut expected = ControlVariates::zeros(base.len());
    let updates = [moved(0.03), moved(0.01), moved(-0.01)];
    let accepted: Vec<(AuthorKey, u64, &[f32])> = (0..3)
        .map(|i| {
            (
                key(i as u8).verifying_key().to_bytes(),
                100,
                &updates[i][..],
            )
        })
        .collect();
    expected
        .close_round(
            &base,
            &accepted,
            Rule::FedAvg,
            plan1.steps,
            plan1.learning_rate,
        )
        .unwrap();
    let correction = correction_of(&job).expect("round 2 is corrected");
    assert_eq!(
        Some(correction.clone()),
        expected.step_correction(&learning.me, plan2.learning_rate)
    );
    assert!(
        next.iter()
            .zip(base.iter())
            .all(|(n, b)| (n - b - 0.01).abs() < 1e-6),
        "FedAvg moved the model by +0.01"
    );
    // Node 0 went further than the federation: its steps are pulled
    // back, by 0.02 over the round's steps at round 1's rate, at the
    // correction's strength α.
    let per_step = -0.02 / f64::from(plan1.steps) * plan2.learning_rate / plan1.learning_rate
        * mc_learn_core::scaffold::STRENGTH;
    assert!(
        correction
            .iter()
            .all(|&c| (f64::from(c) - per_step).abs() < 1e-6),
        "{per_step} vs {:?}",
        &correction[..3]
    );

    // A restart resumes the round with the same correction.
    let (_, saved) = fx.saves.last().cloned().unwrap();
    let spec = learning.runs[&id].spec.clone();
    let mut restarted = Learning::new(key(0));
    restarted.restore(&[(id.to_string(), saved)]);
    let mut fx = Effects::default();
    restarted.observe(vec![(id, spec)], 2, &mut fx);
    assert_eq!(correction_of(&fx.jobs[0]), Some(correction));

    // Without drift correction no job carries one.
    let mut plain = Learning::new(key(0));
    let (id, _) = start(&mut plain, request(Rule::FedAvg));
    let mut fx = play_round(
        &mut plain,
        id,
        0,
        &[],
        [
            (moments(1.0), 300),
            (moments(2.0), 300),
            (moments(3.0), 300),
        ],
    );
    let (base, _, _) = update_job(&mut fx);
    let fx = play_round(
        &mut plain,
        id,
        1,
        &base,
        [(moved(0.03), 100), (moved(0.01), 100), (moved(-0.01), 100)],
    );
    assert_eq!(correction_of(&fx.jobs[0]), None);
}
