use ed25519_dalek::SigningKey;
use rand::{SeedableRng, rngs::ChaCha8Rng};

use super::*;
use crate::schema::Task;
use crate::update::sign;

fn schema() -> ModelSchema {
    ModelSchema {
        name: "tiny".into(),
        task: Task::Regression,
        features: vec!["a".into(), "b".into()],
        target: "y".into(),
        hidden_layers: vec![3],
        target_scale: Default::default(),
        log_features: Vec::new(),
    }
}

fn keys(n: u64) -> Vec<SigningKey> {
    (0..n)
        .map(|s| SigningKey::generate(&mut ChaCha8Rng::seed_from_u64(s)))
        .collect()
}

fn settings(keys: &[SigningKey], rule: Rule, drift_correction: bool) -> Settings {
    Settings {
        id: CampaignId::from_name("campaign-tests"),
        model: schema(),
        participants: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
        training: LocalTraining {
            local_epochs: 2,
            batch_size: 10,
            learning_rate: 0.01,
            rounds: 3,
            final_rate_fraction: 1.0,
        },
        rule,
        drift_correction,
        max_update_norm: 100.0,
        seed: 9,
        init: Init::Torch,
    }
}

/// Member `i`'s answer to `work`: fake moments (`i` everywhere, `10·(i+1)`
/// samples) or the base moved by `0.01·(i+1)` plus its correction.
fn answer(campaign: &Campaign, key: &SigningKey, i: usize) -> SignedUpdate {
    let me = key.verifying_key().to_bytes();
    let (samples, weights) = match campaign.work(&me) {
        Work::Moments => (10 * (i as u64 + 1), vec![i as f32; 6]),
        Work::Update {
            base, correction, ..
        } => {
            let shift = 0.01 * (i as f32 + 1.0);
            let weights = base
                .iter()
                .enumerate()
                .map(|(k, b)| b + shift + correction.as_ref().map_or(0.0, |c| c[k]))
                .collect();
            (10, weights)
        }
    };
    let settings = campaign.settings();
    sign(
        key,
        settings.id,
        campaign.round(),
        campaign.base_hash(),
        samples,
        weights,
    )
    .unwrap()
}

fn run_round(campaign: &mut Campaign, keys: &[SigningKey]) -> Closed {
    for (i, key) in keys.iter().enumerate() {
        let update = answer(campaign, key, i);
        campaign.offer(update).unwrap();
    }
    assert!(campaign.collector().is_complete());
    campaign.close().unwrap()
}

#[test]
fn a_campaign_pools_moments_then_runs_its_rounds_and_completes() {
    let keys = keys(3);
    let mut campaign = Campaign::new(settings(&keys, Rule::FedAvg, false)).unwrap();
    assert_eq!(
        campaign.work(&keys[0].verifying_key().to_bytes()),
        Work::Moments
    );
    assert_eq!(campaign.plan(), None);

    let closed = run_round(&mut campaign, &keys);
    assert_eq!((closed.round, closed.accepted, closed.missing), (0, 3, 0));
    assert_eq!(closed.next, Next::Round(1));
    assert!(closed.error.is_none());
    // Sample-weighted mean of 0, 1 and 2 with weights 10, 20, 30.
    let moments = campaign.moments().unwrap();
    assert!((moments[0] - 80.0 / 60.0).abs() < 1e-6);
    assert_eq!(campaign.reference_count(), Some(20));
    assert_eq!(campaign.local_steps(), Some(4), "2 epochs of ⌈20 / 10⌉");
    assert_eq!(
        campaign.global().as_ref(),
        init_weights(&schema(), 9, Init::Torch).as_slice()
    );

    let start = campaign.global().clone();
    for round in 1..=3 {
        let closed = run_round(&mut campaign, &keys);
        assert_eq!(closed.round, round);
        assert_eq!(closed.model_hash, model_hash(campaign.global()));
    }
    assert!(campaign.completed());
    assert_eq!(campaign.round(), 3);
    // Every round moved each weight by the mean shift, 0.02.
    for (a, b) in campaign.global().iter().zip(start.iter()) {
        assert!((a - b - 0.06).abs() < 1e-5, "{a} - {b}");
    }
}

#[test]
fn the_work_of_a_model_round_carries_plan_seed_and_base() {
    let keys = keys(2);
    let mut campaign = Campaign::new(settings(&keys, Rule::FedAvg, false)).unwrap();
    run_round(&mut campaign, &keys);
    run_round(&mut campaign, &keys);
    let Work::Update {
        base,
        plan,
        seed,
        correction,
        ..
    } = campaign.work(&keys[1].verifying_key().to_bytes())
    else {
        panic!("round 2 is a model round");
    };
    assert_eq!(campaign.round(), 2);
    assert_eq!(&base, campaign.global());
    let me = keys[1].verifying_key().to_bytes();
    assert_eq!(seed, shuffle_seed(9, 2, &me));
    let Work::Update { seed: other, .. } = campaign.work(&keys[0].verifying_key().to_bytes())
    else {
        panic!("round 2 is a model round");
    };
    assert_ne!(seed, other, "every member shuffles its own way");
    // The lower median of 10 and 20 samples.
    assert_eq!(plan, campaign.settings().training.plan(10, 2));
    assert_eq!(correction, None, "no drift correction asked for");
}

#[test]
fn drift_correction_gives_members_opposite_corrections_after_a_round() {
    let keys = keys(2);
    let mut campaign = Campaign::new(settings(&keys, Rule::FedAvg, true)).unwrap();
    run_round(&mut campaign, &keys);
    run_round(&mut campaign, &keys);
    let correction = |i: usize| match campaign.work(&keys[i].verifying_key().to_bytes()) {
        Work::Update { correction, .. } => correction.expect("a correction after round 1"),
        Work::Moments => panic!("a model round"),
    };
    let (a, b) = (correction(0), correction(1));
    // Member 0 moved less than the mean, member 1 more, by equal amounts.
    assert!(a[0] > 0.0 && b[0] < 0.0);
    assert!((a[0] + b[0]).abs() < 1e-6);
}

#[test]
fn a_round_zero_without_updates_is_repeated_and_a_silent_model_round_keeps_the_model() {
    let keys = keys(2);
    let mut campaign = Campaign::new(settings(&keys, Rule::FedAvg, false)).unwrap();
    let closed = campaign.close().unwrap();
    assert_eq!(closed.next, Next::Round(0));
    assert_eq!(closed.error, Some(AggregateError::NoUpdates));
    assert!(campaign.moments().is_none());

    run_round(&mut campaign, &keys);
    let before = campaign.global().clone();
    let closed = campaign.close().unwrap();
    assert_eq!((closed.round, closed.next), (1, Next::Round(2)));
    assert_eq!(closed.error, Some(AggregateError::NoUpdates));
    assert_eq!(campaign.global(), &before);
}

#[test]
fn progress_resumes_to_the_same_campaign_and_misfits_are_refused() {
    let keys = keys(3);
    let settings = settings(&keys, Rule::FedAvg, true);
    let mut campaign = Campaign::new(settings.clone()).unwrap();
    run_round(&mut campaign, &keys);
    run_round(&mut campaign, &keys);
    let progress = campaign.progress();
    let mut resumed = Campaign::resume(settings.clone(), progress.clone()).unwrap();
    assert_eq!(resumed.progress(), progress);
    assert_eq!(resumed.collector().accepted().count(), 0);
    // Both go on to byte-identical models.
    run_round(&mut campaign, &keys);
    run_round(&mut resumed, &keys);
    assert_eq!(campaign.global(), resumed.global());

    let mut short = progress.clone();
    short.global.pop();
    assert_eq!(
        Campaign::resume(settings.clone(), short).unwrap_err(),
        CampaignError::Misfit("model of another size")
    );
    let mut late = progress.clone();
    late.round = 4;
    assert!(Campaign::resume(settings.clone(), late).is_err());
    let mut odd = progress;
    odd.moments = Some(vec![0.0; 5]);
    assert!(Campaign::resume(settings, odd).is_err());
}

#[test]
fn updates_for_another_base_are_refused() {
    let keys = keys(2);
    let mut campaign = Campaign::new(settings(&keys, Rule::FedAvg, false)).unwrap();
    run_round(&mut campaign, &keys);
    let stale = sign(
        &keys[0],
        campaign.settings().id,
        1,
        model_hash(&[1.0]),
        10,
        campaign.global().to_vec(),
    )
    .unwrap();
    assert_eq!(campaign.offer(stale), Err(Rejection::WrongBase));
}
