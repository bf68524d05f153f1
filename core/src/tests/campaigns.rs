//! Federated learning: campaigns run between cores with a stand-in trainer.

use super::*;

use crate::learning::{ClosedBy, DEFAULT_CAMPAIGN_INIT};
use mc_learn_core::aggregate::Rule;
use mc_learn_core::round::Rejection;
use mc_learn_core::schema::{ModelSchema, Task};

fn tiny_schema() -> ModelSchema {
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

impl Net {
    fn public_key(&mut self, at: &str) -> String {
        self.nodes
            .get_mut(&NodeId::from(at))
            .unwrap()
            .node
            .status()
            .learning
            .public_key
    }

    fn participants(&mut self, names: &[&str]) -> Vec<Participant> {
        names
            .iter()
            .map(|n| Participant {
                node: n.to_string(),
                key: self.public_key(n),
            })
            .collect()
    }

    /// Runs every pending training job: moments are made-up constants per
    /// node, an update moves the base by a per-node offset.
    fn train_all(&mut self) {
        let names: Vec<NodeId> = self.nodes.keys().cloned().collect();
        for (i, name) in names.iter().enumerate() {
            let jobs = std::mem::take(&mut self.nodes.get_mut(name).unwrap().jobs);
            for job in jobs {
                let outcome = match &job.kind {
                    TrainKind::Moments => {
                        let n = 2 * job.model.features.len() + 2;
                        Ok((vec![i as f32 + 1.0; n], 100 * (i as u64 + 1)))
                    }
                    TrainKind::Update { base, .. } => Ok((
                        base.iter().map(|w| w + 0.01 * (i as f32 + 1.0)).collect(),
                        100,
                    )),
                };
                self.input(name, Input::Trained(job.result(outcome)));
                self.run();
            }
        }
    }

    fn campaign(&mut self, at: &str, id: &str) -> CampaignView {
        match self.api(at, ApiRequest::GetCampaign { id: id.into() }) {
            Ok(ApiResponse::Campaign(v)) => *v,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn create_campaign(&mut self, at: &str, names: &[&str], rule: Rule) -> String {
        let participants = self.participants(names);
        let request = CampaignRequest {
            model: tiny_schema(),
            rounds: 3,
            local_epochs: 1,
            batch_size: None,
            learning_rate: None,
            drift_correction: None,
            final_rate_fraction: None,
            init: None,
            participants,
            aggregation: rule,
            round_deadline_s: 5.0,
            seed: Some(42),
            max_update_norm: None,
        };
        match self.api(at, ApiRequest::CreateCampaign(Box::new(request))) {
            Ok(ApiResponse::Campaign(v)) => v.id,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_campaign_runs_to_identical_models_on_every_participant() {
    let mut net = Net::with_learning(&["a", "b", "c"], true, Some(500));
    net.connect("a", "b");
    net.connect("a", "c");
    net.connect("b", "c");
    let id = net.create_campaign("a", &["a", "b", "c"], Rule::FedAvg);
    // b and c learn of the campaign from the document at their next tick.
    for _ in 0..200 {
        net.train_all();
        if net.nodes.values().all(|h| !h.finished.is_empty()) {
            break;
        }
        net.advance_to_next_timer();
    }
    let finished: Vec<&FinishedModel> = net.nodes.values().map(|h| &h.finished[0]).collect();
    assert!(finished.iter().all(|f| f.weights == finished[0].weights));
    assert!(finished.iter().all(|f| f.moments == finished[0].moments));
    // Pooled moments are sample-weighted: (1·100 + 2·200 + 3·300) / 600.
    assert!((finished[0].moments[0] - 14.0 / 6.0).abs() < 1e-5);
    // Three rounds, each moving the model by the mean offset 0.02.
    let init = mc_learn_core::init::init_weights(&tiny_schema(), 42, DEFAULT_CAMPAIGN_INIT);
    assert!((finished[0].weights[0] - init[0] - 0.06).abs() < 1e-5);
    let view = net.campaign("b", &id);
    assert_eq!(view.state, learning::CampaignState::Completed);
    assert_eq!(view.rounds.len(), 4);
    // Every closed round was also an output, with the record the view shows.
    let closed: Vec<&learning::RoundRecord> = net.nodes[&NodeId::new("b")]
        .closed
        .iter()
        .filter(|(campaign, _)| campaign.to_string() == id)
        .map(|(_, record)| record)
        .collect();
    assert_eq!(closed, view.rounds.iter().collect::<Vec<_>>());
    assert!(
        view.rounds
            .iter()
            .all(|r| r.accepted == 3 && r.closed_by == ClosedBy::Complete)
    );
    let digests_a: Vec<String> = net
        .campaign("a", &id)
        .rounds
        .into_iter()
        .map(|r| r.accepted_digest)
        .collect();
    let digests_b: Vec<String> = view.rounds.into_iter().map(|r| r.accepted_digest).collect();
    assert_eq!(digests_a, digests_b);
}

#[test]
fn a_missing_participant_does_not_stall_the_campaign() {
    let mut net = Net::with_learning(&["a", "b", "c"], true, Some(500));
    net.connect("a", "b");
    net.connect("a", "c");
    net.connect("b", "c");
    let id = net.create_campaign("a", &["a", "b", "c"], Rule::Median);
    // c never trains: its jobs are thrown away.
    for _ in 0..500 {
        net.nodes.get_mut(&NodeId::from("c")).unwrap().jobs.clear();
        net.train_all();
        if ["a", "b"]
            .iter()
            .all(|n| !net.nodes[&NodeId::from(*n)].finished.is_empty())
        {
            break;
        }
        net.advance_to_next_timer();
    }
    let a = net.campaign("a", &id);
    assert_eq!(a.state, learning::CampaignState::Completed);
    assert!(
        a.rounds
            .iter()
            .all(|r| r.accepted == 2 && r.missing == 1 && r.closed_by == ClosedBy::Deadline)
    );
    assert_eq!(
        net.nodes[&NodeId::from("a")].finished[0].weights,
        net.nodes[&NodeId::from("b")].finished[0].weights
    );
}

#[test]
fn forged_and_foreign_updates_are_rejected_and_counted() {
    use mc_learn_core::ed25519_dalek::SigningKey;
    let mut net = Net::with_learning(&["a", "b"], true, Some(500));
    net.connect("a", "b");
    let id = net.create_campaign("a", &["a", "b"], Rule::FedAvg);
    let campaign = learning::parse_campaign_id(&id).unwrap();
    let outsider = SigningKey::from_bytes(&[9; 32]);
    let features = tiny_schema().features.len();
    let base_hash = mc_learn_core::model_hash(&[]);
    let foreign = mc_learn_core::update::sign(
        &outsider,
        campaign,
        0,
        base_hash,
        10,
        vec![1.0; 2 * features + 2],
    )
    .unwrap();
    let r = net.api(
        "a",
        ApiRequest::SubmitUpdate {
            campaign: None,
            bytes: foreign.encode(),
        },
    );
    assert!(
        matches!(
            &r,
            Err(ApiError::Learn(LearnError::Rejected(
                Rejection::NotParticipant
            )))
        ),
        "{r:?}"
    );
    // A participant's real update with its weights changed after signing.
    // b joins at its next tick; both send their moments.
    for _ in 0..10 {
        net.train_all();
        if net.campaign("a", &id).current_round == 1 {
            break;
        }
        net.advance_to_next_timer();
    }
    let view = net.campaign("a", &id);
    assert_eq!(view.current_round, 1, "moments round closed: {view:?}");
    assert_eq!(view.rounds[0].accepted, 2);
    let b_key = SigningKey::from_bytes(&[2; 32]);
    let init = mc_learn_core::init::init_weights(&tiny_schema(), 42, DEFAULT_CAMPAIGN_INIT);
    let mut tampered = mc_learn_core::update::sign(
        &b_key,
        campaign,
        1,
        mc_learn_core::model_hash(&init),
        10,
        init.clone(),
    )
    .unwrap();
    tampered.weights[0] += 1.0;
    let r = net.api(
        "a",
        ApiRequest::SubmitUpdate {
            campaign: None,
            bytes: tampered.encode(),
        },
    );
    assert!(
        matches!(
            &r,
            Err(ApiError::Learn(LearnError::Rejected(
                Rejection::WeightsMismatch
            )))
        ),
        "{r:?}"
    );
    let r = net.api(
        "a",
        ApiRequest::SubmitUpdate {
            campaign: None,
            bytes: vec![1, 2, 3],
        },
    );
    assert!(
        matches!(r, Err(ApiError::Learn(LearnError::Malformed(_)))),
        "{r:?}"
    );
    // Addressed to another campaign: refused before the collector sees it
    // (the counts below are unchanged).
    let r = net.api(
        "a",
        ApiRequest::SubmitUpdate {
            campaign: Some("00".repeat(16)),
            bytes: tampered.encode(),
        },
    );
    assert!(
        matches!(&r, Err(ApiError::Learn(LearnError::WrongCampaign { update, .. })) if *update == id),
        "{r:?}"
    );
    let rejections = net.campaign("a", &id).rejections;
    assert_eq!(
        rejections.get("not_participant"),
        Some(&1),
        "{rejections:?}"
    );
    assert_eq!(
        rejections.get("weights_mismatch"),
        Some(&1),
        "{rejections:?}"
    );
}

#[test]
fn campaign_progress_survives_a_restart() {
    let mut net = Net::with_learning(&["a", "b"], true, Some(500));
    net.connect("a", "b");
    let id = net.create_campaign("a", &["a", "b"], Rule::FedAvg);
    // Run until b has closed round 1 (moments and one model round).
    for _ in 0..100 {
        net.train_all();
        if net.campaign("b", &id).rounds.len() >= 2 {
            break;
        }
        net.advance_to_next_timer();
    }
    let before = net.campaign("b", &id);
    assert!(before.rounds.len() >= 2, "{before:?}");
    // b restarts from its store, with the same key.
    let h = net.nodes.get_mut(&NodeId::from("b")).unwrap();
    let restored = Restored::from_pairs(h.store.clone());
    assert_eq!(restored.campaigns.len(), 1);
    let mut config = Config::new("region-b");
    config.learning_tick_ms = Some(500);
    let mut node = Node::new(config, NodeId::from("b"), restored, 77, net.now).unwrap();
    node.set_signing_key([2; 32]);
    h.node = node;
    h.jobs.clear();
    net.disconnect("a", "b");
    net.connect("a", "b");
    let after = net.campaign("b", &id);
    assert_eq!(after.current_round, before.current_round);
    assert_eq!(after.rounds, before.rounds);
    // And the campaign still completes identically on both.
    for _ in 0..200 {
        net.train_all();
        if net.nodes.values().all(|h| !h.finished.is_empty()) {
            break;
        }
        net.advance_to_next_timer();
    }
    let a = &net.nodes[&NodeId::from("a")].finished[0];
    let b = &net.nodes[&NodeId::from("b")].finished[0];
    assert_eq!(a.weights, b.weights);
}
