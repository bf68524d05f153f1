//! Drives two or three cores by hand over a perfect in-memory network with a
//! virtual clock, in the style of quinn-proto's test `Pair`.

use std::collections::{BTreeMap, VecDeque};

use serde_json::json;

use super::*;

mod batches;
mod campaigns;

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
