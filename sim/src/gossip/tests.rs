//! The gossip layer alone, over a perfect or lossy instant network.

use std::collections::VecDeque;

use super::*;
use crate::rng::{Streams, chance};

/// `n` routers, every pair connected; frames delivered in FIFO order.
struct Swarm {
    routers: Vec<Router>,
    up: Vec<Vec<usize>>,
    config: Config,
    rng: ChaCha8Rng,
    in_flight: VecDeque<(usize, usize, Frame)>,
    delivered: Vec<Vec<MsgId>>,
    duplicates: usize,
    authors: Vec<usize>,
    loss_of_messages: f64,
}

impl Swarm {
    fn new(n: usize) -> Self {
        Self {
            routers: vec![Router::new(); n],
            up: (0..n)
                .map(|i| (0..n).filter(|j| *j != i).collect())
                .collect(),
            config: Config::default(),
            rng: Streams::new(9).stream("gossip-test"),
            in_flight: VecDeque::new(),
            delivered: vec![Vec::new(); n],
            duplicates: 0,
            authors: Vec::new(),
            loss_of_messages: 0.0,
        }
    }

    fn send(&mut self, from: usize, out: Vec<(usize, Frame)>) {
        for (to, frame) in out {
            if matches!(frame, Frame::Message(_)) && chance(&mut self.rng, self.loss_of_messages) {
                continue;
            }
            self.in_flight.push_back((from, to, frame));
        }
    }

    fn heartbeat_all(&mut self) {
        for i in 0..self.routers.len() {
            let mut out = Vec::new();
            self.routers[i].heartbeat(&self.up[i], &mut self.rng, &self.config, &mut out);
            self.send(i, out);
        }
        self.run();
    }

    fn publish(&mut self, author: usize) -> MsgId {
        let id = self.authors.len() as MsgId;
        self.authors.push(author);
        let mut out = Vec::new();
        self.routers[author].publish(id, &self.up[author], &self.config, &mut out);
        self.delivered[author].push(id);
        self.send(author, out);
        self.run();
        id
    }

    fn run(&mut self) {
        while let Some((from, to, frame)) = self.in_flight.pop_front() {
            let mut out = Vec::new();
            let authors = self.authors.clone();
            match self.routers[to].on_frame(
                from,
                frame,
                |id| authors[id as usize],
                &self.config,
                &mut out,
            ) {
                Outcome::Deliver(id) => self.delivered[to].push(id),
                Outcome::Duplicate => self.duplicates += 1,
                Outcome::Control => {}
            }
            self.send(to, out);
        }
    }
}

#[test]
fn heartbeats_build_a_mesh_within_bounds() {
    let mut s = Swarm::new(30);
    for _ in 0..5 {
        s.heartbeat_all();
    }
    for (i, r) in s.routers.iter().enumerate() {
        let d = r.mesh().len();
        assert!(
            (s.config.d_low..=s.config.d_high).contains(&d),
            "node {i}: mesh {d}"
        );
        assert!(!r.mesh().contains(&i));
    }
}

#[test]
fn a_published_message_reaches_everyone_once() {
    let mut s = Swarm::new(30);
    s.heartbeat_all();
    let id = s.publish(4);
    for (i, got) in s.delivered.iter().enumerate() {
        assert_eq!(got, &vec![id], "node {i}");
    }
    assert!(s.duplicates > 0, "a mesh delivers some copies twice");
}

#[test]
fn lazy_pull_repairs_lost_eager_pushes() {
    let mut s = Swarm::new(30);
    s.config.flood_publish = false;
    s.heartbeat_all();
    s.loss_of_messages = 0.9;
    let id = s.publish(0);
    let before = s.delivered.iter().filter(|d| d.contains(&id)).count();
    assert!(before < 15, "90 % loss should leave most out: {before}");
    s.loss_of_messages = 0.0;
    for _ in 0..s.config.history_gossip {
        s.heartbeat_all();
    }
    let after = s.delivered.iter().filter(|d| d.contains(&id)).count();
    assert_eq!(after, 30, "IHAVE/IWANT should fetch it everywhere");
}

#[test]
fn old_messages_are_neither_announced_nor_served() {
    let mut s = Swarm::new(5);
    s.heartbeat_all();
    s.loss_of_messages = 1.0;
    let id = s.publish(0);
    for _ in 0..s.config.history_length + 1 {
        let mut out = Vec::new();
        s.routers[0].heartbeat(&s.up[0], &mut s.rng, &s.config, &mut out);
    }
    s.loss_of_messages = 0.0;
    let mut out = Vec::new();
    s.routers[0].on_frame(1, Frame::IWant(vec![id]), |_| 0, &s.config, &mut out);
    assert!(out.is_empty(), "served from an expired cache: {out:?}");
}

#[test]
fn a_full_mesh_refuses_grafts_and_prune_removes() {
    let config = Config::default();
    let mut r = Router::new();
    let mut out = Vec::new();
    for peer in 0..config.d_high {
        r.on_frame(peer, Frame::Graft, |_| 0, &config, &mut out);
    }
    assert!(out.is_empty());
    r.on_frame(99, Frame::Graft, |_| 0, &config, &mut out);
    assert_eq!(out, vec![(99, Frame::Prune)]);
    r.on_frame(3, Frame::Prune, |_| 0, &config, &mut out);
    assert!(!r.mesh().contains(&3));
    r.peer_down(4);
    assert_eq!(r.mesh().len(), config.d_high - 2);
}

#[test]
fn seen_ids_are_forgotten_in_order() {
    let config = Config::default();
    let mut r = Router::new();
    let mut out = Vec::new();
    for id in 0..10 {
        r.on_frame(1, Frame::Message(id), |_| 0, &config, &mut out);
    }
    r.forget_before(6);
    assert!(!r.has_seen(5));
    assert!(r.has_seen(6) && r.has_seen(9));
}
