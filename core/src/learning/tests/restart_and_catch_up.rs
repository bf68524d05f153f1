//! Settings refused, progress across a restart, and catching up with the
//! majority after missed rounds.

use super::*;

#[test]
fn bad_training_settings_are_refused() {
    let learning = Learning::new(key(0));
    let declare = |batch: Option<u32>, rate: Option<f64>| {
        let mut r = request(Rule::FedAvg);
        (r.batch_size, r.learning_rate) = (batch, rate);
        learning.declare(r, &NodeId::new("n0"), 0, 1)
    };
    for batch in [0, MAX_CAMPAIGN_BATCH + 1] {
        let error = declare(Some(batch), None).unwrap_err();
        assert!(
            matches!(&error, LearnError::Invalid(m) if m.contains("batch_size")),
            "{error}"
        );
    }
    for rate in [0.0, -1e-3, f64::NAN, f64::INFINITY, MAX_CAMPAIGN_LR * 1.01] {
        let error = declare(None, Some(rate)).unwrap_err();
        assert!(
            matches!(&error, LearnError::Invalid(m) if m.contains("learning_rate")),
            "{error}"
        );
    }
    assert!(declare(Some(MAX_CAMPAIGN_BATCH), Some(MAX_CAMPAIGN_LR)).is_ok());
    for fraction in [0.0, -0.5, 1.01, f64::NAN] {
        let mut r = request(Rule::FedAvg);
        r.final_rate_fraction = Some(fraction);
        let error = learning.declare(r, &NodeId::new("n0"), 0, 1).unwrap_err();
        assert!(
            matches!(&error, LearnError::Invalid(m) if m.contains("final_rate_fraction")),
            "{error}"
        );
    }
    let mut constant = request(Rule::FedAvg);
    constant.final_rate_fraction = Some(1.0);
    let (_, spec) = learning
        .declare(constant, &NodeId::new("n0"), 0, 1)
        .unwrap();
    let training = spec.local_training();
    assert_eq!(training.rate(1), training.rate(ROUNDS));

    // A declaration that reaches the document with bad settings anyway
    // (another implementation, a hand-written entry) is only observed.
    let mut learning = Learning::new(key(0));
    let (id, mut spec) = learning
        .declare(request(Rule::FedAvg), &NodeId::new("n0"), 0, 1)
        .unwrap();
    spec.batch_size = 0;
    let mut fx = Effects::default();
    learning.observe(vec![(id, spec)], 0, &mut fx);
    assert!(fx.jobs.is_empty());
    let view = learning.view(&id.to_string()).unwrap();
    assert_eq!(view.state, CampaignState::Observing);
}

#[test]
fn the_reference_count_survives_a_restart_and_older_progress_is_unusable() {
    let mut learning = Learning::new(key(0));
    let (id, _) = start(&mut learning, request(Rule::FedAvg));
    let fx = play_round(
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
    let (_, saved) = fx.saves.last().cloned().unwrap();
    let spec = learning.runs[&id].spec.clone();

    let mut restarted = Learning::new(key(0));
    restarted.restore(&[(id.to_string(), saved.clone())]);
    let mut fx = Effects::default();
    restarted.observe(vec![(id, spec.clone())], 2, &mut fx);
    let (_, _, plan) = update_job(&mut fx);
    assert_eq!(plan.steps, 32);
    assert!(close(plan.learning_rate, 0.01), "{}", plan.learning_rate);

    // Progress saved before the control variates existed (the last
    // field) does not decode: the campaign starts over rather than
    // resume without them.
    #[derive(Serialize)]
    struct Older {
        round: u32,
        completed: bool,
        moments: Option<Vec<f32>>,
        global: Vec<f32>,
        history: Vec<RoundRecord>,
        rejections: BTreeMap<String, u64>,
        reference_count: u64,
    }
    let snapshot: Snapshot = postcard::from_bytes(&saved).unwrap();
    let older = postcard::to_stdvec(&Older {
        round: snapshot.round,
        completed: snapshot.completed,
        moments: snapshot.moments,
        global: snapshot.global,
        history: snapshot.history,
        rejections: snapshot.rejections,
        reference_count: snapshot.reference_count,
    })
    .unwrap();
    assert!(postcard::from_bytes::<Snapshot>(&older).is_err());
    let mut restarted = Learning::new(key(0));
    restarted.restore(&[(id.to_string(), older)]);
    let mut fx = Effects::default();
    restarted.observe(vec![(id, spec)], 2, &mut fx);
    assert_eq!(fx.jobs[0].kind, TrainKind::Moments);
    assert_eq!(fx.jobs[0].round, 0);
}

/// Node `me`'s view of one round: its own result through `on_trained`,
/// the other members' signed and offered (those in `from`) as if they
/// came from the network.
fn feed(
    node: &mut Learning,
    me: u8,
    id: CampaignId,
    round: u32,
    base: &[f32],
    from: &[(u8, Vec<f32>, u64)],
) -> Effects {
    let mut fx = Effects::default();
    for (i, weights, count) in from.iter().cloned() {
        if i == me {
            let result = TrainResult {
                campaign: id,
                round,
                base: model_hash(base),
                outcome: Ok((weights, count)),
            };
            node.on_trained(result, 1, &mut fx);
        } else {
            let signed =
                update::sign(&key(i), id, round, model_hash(base), count, weights).unwrap();
            let _ = node.offer(signed, 1, &mut fx, false);
        }
    }
    fx
}

/// Hands every message in `fx.sends` addressed to `to` over to `node`,
/// as sent by `from`; returns what `node` did.
fn deliver(fx: &Effects, from: &str, to: &str, node: &mut Learning, now: Millis) -> Effects {
    let mut out = Effects::default();
    for (dest, message) in &fx.sends {
        if dest.as_str() == to {
            node.on_message(&NodeId::new(from), message.clone(), now, &mut out)
                .unwrap();
        }
    }
    out
}

fn state_requests(fx: &Effects) -> Vec<String> {
    fx.sends
        .iter()
        .filter(|(_, m)| matches!(m, LearnMessage::StateRequest { .. }))
        .map(|(to, _)| to.to_string())
        .collect()
}

#[test]
fn a_node_that_missed_rounds_catches_up_with_the_majority() {
    let mut asked = request(Rule::FedAvg);
    asked.drift_correction = Some(true);
    let mut a = Learning::new(key(0));
    let mut b = Learning::new(key(1));
    let (id, spec) = a.declare(asked, &NodeId::new("n0"), 0, 1).unwrap();
    for node in [&mut a, &mut b] {
        node.observe(vec![(id, spec.clone())], 0, &mut Effects::default());
    }
    let stats = [(0u8, 300u64, 1.0f32), (1, 1000, 2.0), (2, 9000, 3.0)];
    let all_moments: Vec<(u8, Vec<f32>, u64)> =
        stats.iter().map(|&(i, n, m)| (i, moments(m), n)).collect();
    feed(&mut a, 0, id, 0, &[], &all_moments);
    feed(&mut b, 1, id, 0, &[], &all_moments);
    let base: Vec<f32> = a.runs[&id].campaign.global().to_vec();
    let moved = |base: &[f32], d: f32| base.iter().map(|w| w + d).collect::<Vec<f32>>();
    let everyone = |base: &[f32]| -> Vec<(u8, Vec<f32>, u64)> {
        (0..3u8)
            .map(|i| (i, moved(base, 0.01 * f32::from(i)), 100))
            .collect()
    };
    feed(&mut a, 0, id, 1, &base, &everyone(&base));
    feed(&mut b, 1, id, 1, &base, &everyone(&base));
    assert_eq!(a.runs[&id].campaign.global(), b.runs[&id].campaign.global());
    assert_eq!(a.runs[&id].round(), 2);

    // Node 0 is down for rounds 2 and 3: the others close them at the
    // deadline without it.
    let deadline = (spec.round_deadline_s * 1000.0) as Millis;
    let mut now = 1;
    for round in [2, 3] {
        let base = b.runs[&id].campaign.global().to_vec();
        let others: Vec<_> = everyone(&base)
            .into_iter()
            .filter(|(i, ..)| *i != 0)
            .collect();
        feed(&mut b, 1, id, round, &base, &others);
        now += deadline + 1;
        b.on_tick(now, &mut Effects::default());
        assert_eq!(b.runs[&id].round(), round + 1);
    }
    let ahead = b.runs[&id].campaign.global().to_vec();
    assert_ne!(a.runs[&id].campaign.global().to_vec(), ahead);

    // Back, node 0 hears round-4 updates. One member's word is not
    // enough, nor is a forged signature; two members' are.
    let signed =
        |i: u8| update::sign(&key(i), id, 4, model_hash(&ahead), 100, moved(&ahead, 0.01)).unwrap();
    let mut fx = Effects::default();
    a.offer(signed(1), now, &mut fx, true).unwrap();
    let mut forged = signed(2);
    forged.weights[0] += 1.0;
    forged.header.weights_hash = model_hash(&forged.weights);
    a.offer(forged, now, &mut fx, true).ok();
    assert!(
        state_requests(&fx).is_empty(),
        "no majority yet: {:?}",
        fx.sends
    );
    a.offer(signed(2), now, &mut fx, true).unwrap();
    let mut asked = state_requests(&fx);
    assert_eq!(asked.len(), 1, "one member is asked");
    if asked[0] != "n1" {
        // The other member asked first (key order) does not answer in
        // time: node 0 asks the next.
        let mut retry = Effects::default();
        a.on_tick(now + deadline, &mut retry);
        asked = state_requests(&retry);
        fx = retry;
    }
    assert_eq!(asked, vec!["n1".to_string()]);

    // A state nobody asked for, or that no majority signed, is refused.
    let mut stray = Effects::default();
    let unasked = LearnMessage::StateChunk {
        campaign: id.0,
        round: 4,
        chunk: Vec::new(),
    };
    assert!(matches!(
        a.on_message(&NodeId::new("n2"), unasked, now, &mut stray),
        Err(LearnError::StateRefused(_))
    ));

    // Node 1 answers; node 0 takes its state, offers the updates it
    // kept and trains round 4 from the majority's model.
    let answer = deliver(&fx, "n0", "n1", &mut b, now);
    assert!(!answer.sends.is_empty(), "node 1 sends its state");
    let mut caught = deliver(&answer, "n1", "n0", &mut a, now);
    let view = a.view(&id.to_string()).unwrap();
    assert_eq!(view.current_round, 4);
    assert_eq!(view.model_hash, Some(model_hash(&ahead).to_string()));
    assert_eq!(view.caught_up.len(), 1);
    assert_eq!(
        (view.caught_up[0].from_round, view.caught_up[0].to_round),
        (2, 4)
    );
    assert_eq!(
        a.runs[&id].campaign.collector().accepted().count(),
        2,
        "the kept updates"
    );
    let job = caught.jobs.remove(0);
    assert_eq!(job.round, 4);
    let (job_base, _, plan) = update_job(&mut Effects {
        jobs: vec![job.clone()],
        ..Effects::default()
    });
    assert_eq!(&job_base[..], &ahead[..]);
    // The control variates came with the state: node 0 is corrected as
    // node 1 would correct it.
    let expected = b.runs[&id]
        .campaign
        .controls()
        .unwrap()
        .step_correction(&key(0).verifying_key().to_bytes(), plan.learning_rate);
    assert!(expected.is_some());
    assert_eq!(correction_of(&job), expected);

    // A result of training on the old base, finishing late, is ignored.
    let mut late = Effects::default();
    a.on_trained(
        TrainResult {
            campaign: id,
            round: 4,
            base: model_hash(&base),
            outcome: Ok((moved(&base, 0.5), 100)),
        },
        now,
        &mut late,
    );
    assert!(a.runs[&id].own_update.is_none());

    // Both finish the campaign on the same model.
    let mine = moved(&ahead, 0.0);
    let done = feed(&mut a, 0, id, 4, &ahead, &[(0, mine.clone(), 100)]);
    deliver(&done, "n0", "n1", &mut b, now);
    let mut fx_b = Effects::default();
    b.offer(signed(2), now, &mut fx_b, true).unwrap();
    b.on_trained(
        TrainResult {
            campaign: id,
            round: 4,
            base: model_hash(&ahead),
            outcome: Ok((moved(&ahead, 0.01), 100)),
        },
        now,
        &mut fx_b,
    );
    assert!(a.runs[&id].completed() && b.runs[&id].completed());
    assert_eq!(a.runs[&id].campaign.global(), b.runs[&id].campaign.global());
}
