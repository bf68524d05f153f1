//! Drives two or three cores by hand over a perfect in-memory network with a
//! virtual clock, in the style of quinn-proto's test `Pair`.

use std::collections::{BTreeMap, VecDeque};

use serde_json::json;

use super::*;

mod batches;

/// One core plus what its driver would hold: a store, timers, replies.
struct Harness {
    node: Node,
    store: BTreeMap<String, Vec<u8>>,
    timers: BTreeMap<Timer, Millis>,
    replies: BTreeMap<RequestId, Result<ApiResponse, ApiError>>,
    jobs: Vec<TrainJob>,
    finished: Vec<FinishedModel>,
    closed: Vec<(CampaignId, learning::RoundRecord)>,
}

/// A few cores wired together. Messages are delivered in the order they were
/// sent; `drop_gossip` models a lossy broadcast layer.
struct Net {
    now: Millis,
    nodes: BTreeMap<NodeId, Harness>,
    in_flight: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    links: Vec<(NodeId, NodeId)>,
    drop_gossip: bool,
    next_request: RequestId,
}

impl Net {
    fn new(names: &[&str], gossip: bool) -> Self {
        Self::with_learning(names, gossip, None)
    }

    fn with_learning(names: &[&str], gossip: bool, learning_tick_ms: Option<Millis>) -> Self {
        let mut nodes = BTreeMap::new();
        for (i, name) in names.iter().enumerate() {
            let mut config = Config::new(format!("region-{name}"));
            config.gossip = gossip;
            config.sync_interval_ms = 1_000;
            config.learning_tick_ms = learning_tick_ms;
            let mut node = Node::new(
                config,
                NodeId::from(*name),
                Restored::default(),
                i as u64,
                0,
            )
            .unwrap();
            node.set_signing_key([i as u8 + 1; 32]);
            nodes.insert(
                NodeId::from(*name),
                Harness {
                    node,
                    store: BTreeMap::new(),
                    timers: BTreeMap::new(),
                    replies: BTreeMap::new(),
                    jobs: Vec::new(),
                    finished: Vec::new(),
                    closed: Vec::new(),
                },
            );
        }
        let mut net = Self {
            now: 0,
            nodes,
            in_flight: VecDeque::new(),
            links: Vec::new(),
            drop_gossip: false,
            next_request: 0,
        };
        net.run();
        net
    }

    fn connected(&self, a: &NodeId, b: &NodeId) -> bool {
        self.links.contains(&(a.clone(), b.clone())) || self.links.contains(&(b.clone(), a.clone()))
    }

    fn connect(&mut self, a: &str, b: &str) {
        let (a, b) = (NodeId::from(a), NodeId::from(b));
        self.links.push((a.clone(), b.clone()));
        self.input(&a, Input::PeerConnected(b.clone()));
        self.input(&b, Input::PeerConnected(a));
        self.run();
    }

    fn disconnect(&mut self, a: &str, b: &str) {
        let (a, b) = (NodeId::from(a), NodeId::from(b));
        self.links
            .retain(|l| *l != (a.clone(), b.clone()) && *l != (b.clone(), a.clone()));
        self.input(&a, Input::PeerDisconnected(b.clone()));
        self.input(&b, Input::PeerDisconnected(a));
        self.run();
    }

    fn input(&mut self, at: &NodeId, input: Input) {
        let now = self.now;
        self.nodes.get_mut(at).unwrap().node.handle(now, input);
        self.drain(at);
    }

    /// Applies every output `at` has queued.
    fn drain(&mut self, at: &NodeId) {
        loop {
            let h = self.nodes.get_mut(at).unwrap();
            let Some(output) = h.node.poll_output() else {
                return;
            };
            match output {
                Output::Send { to, bytes } => {
                    if self.connected(at, &to) {
                        self.in_flight.push_back((at.clone(), to, bytes));
                    }
                }
                Output::Broadcast { bytes, .. } => {
                    if self.drop_gossip {
                        continue;
                    }
                    let peers: Vec<NodeId> = self.nodes.keys().cloned().collect();
                    for to in peers {
                        if self.connected(at, &to) {
                            self.in_flight.push_back((at.clone(), to, bytes.clone()));
                        }
                    }
                }
                Output::Persist(ops) => {
                    for op in ops {
                        match op {
                            StoreOp::Put { key, value } => {
                                h.store.insert(key, value);
                            }
                            StoreOp::DeletePrefix(prefix) => {
                                h.store.retain(|k, _| !k.starts_with(&prefix));
                            }
                        }
                    }
                }
                Output::Reply { id, response } => {
                    h.replies.insert(id, response);
                }
                Output::ScheduleTimer { timer, at: when } => {
                    h.timers.insert(timer, when);
                }
                Output::Train(job) => h.jobs.push(job),
                Output::ModelReady(model) => h.finished.push(model),
                Output::RoundClosed { campaign, record } => h.closed.push((campaign, record)),
            }
        }
    }

    /// Delivers messages until the network is quiet.
    fn run(&mut self) {
        while let Some((from, to, bytes)) = self.in_flight.pop_front() {
            self.input(&to, Input::Received { from, bytes });
        }
    }

    /// Jumps the virtual clock to the next timer and fires it.
    fn advance_to_next_timer(&mut self) {
        let (at, node, timer) = self
            .nodes
            .iter()
            .flat_map(|(id, h)| {
                h.timers
                    .iter()
                    .map(move |(t, when)| (*when, id.clone(), *t))
            })
            .min()
            .expect("a timer is always pending");
        self.now = self.now.max(at);
        self.nodes.get_mut(&node).unwrap().timers.remove(&timer);
        self.input(&node, Input::TimerExpired(timer));
        self.run();
    }

    fn api(&mut self, at: &str, request: ApiRequest) -> Result<ApiResponse, ApiError> {
        let at = NodeId::from(at);
        let id = self.next_request;
        self.next_request += 1;
        self.input(&at, Input::Api { id, request });
        let reply = self.nodes.get_mut(&at).unwrap().replies.remove(&id);
        self.run();
        reply.expect("the core replies to every request at once")
    }

    fn put(&mut self, at: &str, key: &str, value: serde_json::Value) {
        let r = self.api(
            at,
            ApiRequest::Put {
                key: key.into(),
                value: value.into(),
            },
        );
        assert!(matches!(r, Ok(ApiResponse::Entry(_))), "{r:?}");
    }

    fn get(&mut self, at: &str, key: &str) -> Option<serde_json::Value> {
        match self.api(at, ApiRequest::Get { key: key.into() }) {
            Ok(ApiResponse::Entry(e)) => Some(e.value.to_value()),
            Err(ApiError::NotFound(_)) => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn heads(&mut self, at: &str) -> Vec<String> {
        self.nodes
            .get_mut(&NodeId::from(at))
            .unwrap()
            .node
            .knowledge_heads()
    }
}

#[test]
fn gossip_delivers_a_put_to_connected_peers_without_waiting_for_sync() {
    let mut net = Net::new(&["a", "b", "c"], true);
    net.connect("a", "b");
    net.connect("a", "c");
    net.connect("b", "c");
    net.put("a", "runbook/db", json!({"steps": 3}));
    assert_eq!(net.get("b", "runbook/db"), Some(json!({"steps": 3})));
    assert_eq!(net.get("c", "runbook/db"), Some(json!({"steps": 3})));
    assert_eq!(net.now, 0, "no timer had to fire");
    let counters = net.nodes[&NodeId::from("b")].node.counters().clone();
    assert_eq!(counters.gossip_received, 1);
}

#[test]
fn anti_entropy_converges_when_every_broadcast_is_lost() {
    let mut net = Net::new(&["a", "b", "c"], true);
    net.connect("a", "b");
    net.connect("b", "c");
    net.drop_gossip = true;
    net.put("a", "k1", json!(1));
    net.put("c", "k2", json!(2));
    assert_eq!(net.get("b", "k1"), None);
    // A line a - b - c: what b learns by sync it passes on at once, so both
    // writes cross both hops within one sync interval (1 000 ms here).
    let converged = |net: &mut Net| {
        ["a", "b", "c"]
            .iter()
            .all(|n| net.get(n, "k1").is_some() && net.get(n, "k2").is_some())
    };
    while !converged(&mut net) {
        assert!(net.now <= 10_000, "no convergence by {} ms", net.now);
        net.advance_to_next_timer();
    }
    assert!(net.now <= 1_000, "converged only at {} ms", net.now);
    for n in ["a", "b", "c"] {
        assert_eq!(net.get(n, "k1"), Some(json!(1)), "{n}");
        assert_eq!(net.get(n, "k2"), Some(json!(2)), "{n}");
    }
    assert_eq!(net.heads("a"), net.heads("c"));
}

#[test]
fn a_peer_that_connects_late_catches_up_on_connect() {
    let mut net = Net::new(&["a", "b"], true);
    net.put("a", "x", json!("before"));
    net.connect("a", "b");
    assert_eq!(net.get("b", "x"), Some(json!("before")));
}

#[test]
fn writes_during_a_disconnect_arrive_after_reconnect() {
    let mut net = Net::new(&["a", "b"], true);
    net.connect("a", "b");
    net.disconnect("a", "b");
    net.put("a", "during", json!(true));
    net.put("b", "other", json!(false));
    net.connect("a", "b");
    assert_eq!(net.get("b", "during"), Some(json!(true)));
    assert_eq!(net.get("a", "other"), Some(json!(false)));
}

#[test]
fn concurrent_puts_of_one_key_converge_to_one_value() {
    let mut net = Net::new(&["a", "b"], false);
    net.put("a", "owner", json!("a"));
    net.put("b", "owner", json!("b"));
    net.connect("a", "b");
    let (va, vb) = (net.get("a", "owner"), net.get("b", "owner"));
    assert_eq!(va, vb);
    assert!(va == Some(json!("a")) || va == Some(json!("b")));
    assert_eq!(net.heads("a"), net.heads("b"));
}

#[test]
fn every_acknowledged_put_is_in_the_store_and_reloads() {
    let mut net = Net::new(&["a"], true);
    for i in 0..20 {
        net.put("a", &format!("k{i}"), json!(i));
    }
    net.api("a", ApiRequest::Delete { key: "k3".into() })
        .unwrap();
    let h = &net.nodes[&NodeId::from("a")];
    let restored = Restored::from_pairs(h.store.clone());
    let mut node = Node::new(Config::new("r"), NodeId::from("a"), restored, 99, 5).unwrap();
    let list = node.knowledge().list("k").unwrap();
    assert_eq!(list.len(), 19);
    assert!(node.knowledge().get("k3").unwrap().is_none());
    assert_eq!(node.knowledge_heads(), net.heads("a"));
}

#[test]
fn the_store_is_compacted_and_still_reloads() {
    let mut net = Net::new(&["a"], true);
    let mut compacted = false;
    // Keys of one shard, so that its chunks pile up.
    let shard = DocId::Knowledge { shard: 0 };
    let keys = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| DocId::knowledge_of(k) == shard);
    for (i, key) in keys.take(600).enumerate() {
        net.put("a", &key, json!({"i": i}));
        let h = &net.nodes[&NodeId::from("a")];
        if h.node.counters().compactions > 0 {
            compacted = true;
            assert!(h.store.contains_key(&store::snapshot_key(&shard)));
            assert!(
                !h.store
                    .keys()
                    .any(|k| k.starts_with(&store::chunk_prefix(&shard)))
            );
            break;
        }
    }
    assert!(
        compacted,
        "600 chunks of one shard never triggered a compaction"
    );
    net.put("a", "after", json!(1));
    let h = &net.nodes[&NodeId::from("a")];
    let restored = Restored::from_pairs(h.store.clone());
    let node = Node::new(Config::new("r"), NodeId::from("a"), restored, 1, 0).unwrap();
    assert_eq!(
        node.knowledge().get("after").unwrap().unwrap().value,
        json!(1)
    );
    assert_eq!(
        node.knowledge().len(),
        net.nodes[&NodeId::from("a")].node.knowledge().len()
    );
}

#[test]
fn malformed_messages_are_counted_and_change_nothing() {
    let mut net = Net::new(&["a", "b"], true);
    net.connect("a", "b");
    net.put("a", "keep", json!(1));
    let before = net.heads("b");
    let b = NodeId::from("b");
    for bytes in [
        vec![],
        vec![1, 2],
        vec![9; 40],
        vec![mc_protocols::WIRE_VERSION, 1, 0, 3, 1, 2, 3],
    ] {
        net.input(
            &b,
            Input::Received {
                from: NodeId::from("a"),
                bytes,
            },
        );
    }
    assert_eq!(net.heads("b"), before);
    assert_eq!(net.get("b", "keep"), Some(json!(1)));
    assert_eq!(net.nodes[&b].node.counters().rejected_messages, 4);
}

#[test]
fn an_oversized_change_falls_back_to_sync() {
    let mut net = Net::new(&["a", "b"], true);
    net.connect("a", "b");
    let big = "x".repeat(mc_protocols::MAX_GOSSIP_MESSAGE_BYTES + 1);
    net.put("a", "big", json!(big));
    assert_eq!(net.get("b", "big"), Some(json!(big)));
    let counters = net.nodes[&NodeId::from("a")].node.counters().clone();
    assert_eq!(counters.gossip_oversize_fallbacks, 1);
    assert_eq!(counters.gossip_published, 0);
}

#[test]
fn bad_keys_are_refused_with_a_typed_error() {
    let mut net = Net::new(&["a"], true);
    for key in ["", "a\nb", &"k".repeat(api::MAX_KEY_BYTES + 1)] {
        let r = net.api(
            "a",
            ApiRequest::Put {
                key: key.into(),
                value: json!(1).into(),
            },
        );
        assert!(matches!(r, Err(ApiError::InvalidKey(_))), "{key:?}: {r:?}");
    }
    assert!(net.nodes[&NodeId::from("a")].store.is_empty());
    assert!(matches!(
        net.api("a", ApiRequest::Delete { key: "nope".into() }),
        Err(ApiError::NotFound(_))
    ));
}

#[test]
fn status_reports_peers_regions_and_sync() {
    let mut net = Net::new(&["a", "b"], true);
    net.connect("a", "b");
    net.put("a", "k", json!(1));
    net.now = 2_500;
    net.advance_to_next_timer();
    let Ok(ApiResponse::Status(status)) = net.api("a", ApiRequest::Status) else {
        panic!("no status");
    };
    assert_eq!(status.region, "region-a");
    assert_eq!(status.knowledge.entries, 1);
    assert_eq!(status.peers.len(), 1);
    assert_eq!(status.peers[0].region.as_deref(), Some("region-b"));
    assert!(status.peers[0].last_sync_ms.is_some());
    assert!(status.peers[0].in_sync);
    assert!(status.uptime_s >= 2.5);
}

#[test]
fn the_same_seed_gives_the_same_timers() {
    let timers = |seed| {
        let mut node = Node::new(
            Config::new("r"),
            NodeId::from("a"),
            Restored::default(),
            seed,
            0,
        )
        .unwrap();
        let mut at = Vec::new();
        for _ in 0..5 {
            while let Some(o) = node.poll_output() {
                if let Output::ScheduleTimer { at: when, .. } = o {
                    at.push(when);
                }
            }
            let now = *at.last().unwrap();
            node.handle(now, Input::TimerExpired(Timer::AntiEntropy));
        }
        at
    };
    assert_eq!(timers(7), timers(7));
    assert_ne!(timers(7), timers(8));
}

#[test]
fn messages_from_a_disconnected_peer_do_not_bring_it_back() {
    let mut net = Net::new(&["a", "b"], true);
    net.connect("a", "b");
    net.disconnect("a", "b");
    let hello = mc_protocols::encode(
        &Message::Hello(Hello {
            region: "late".into(),
            version: "0".into(),
        }),
        MAX_MESSAGE_BYTES,
    )
    .unwrap();
    let a = NodeId::from("a");
    net.input(
        &a,
        Input::Received {
            from: NodeId::from("b"),
            bytes: hello,
        },
    );
    assert_eq!(net.nodes[&a].node.peers().count(), 0);
}

// ---------------------------------------------------------------------------
// Federated learning: campaigns run between cores with a stand-in trainer.

use crate::learning::ClosedBy;
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
    let init = mc_learn_core::init::init_weights(&tiny_schema(), 42);
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
    let init = mc_learn_core::init::init_weights(&tiny_schema(), 42);
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
