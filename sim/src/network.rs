//! The network model: when a message sent now arrives, if it arrives at all,
//! and what it cost in messages and bytes.
//!
//! - **Latency**: half the round-trip time between the two nodes' sites
//!   ([`crate::regions`]), plus a uniform jitter in `[0, jitter_ms]`.
//! - **Bandwidth**: each node has one egress queue drained at
//!   `bandwidth_mbps`; a message leaves when the ones before it have been
//!   serialised (ingress is not limited).
//! - **Point-to-point messages** (the core's `Send`: request-response on a
//!   TCP connection) are reliable and in order per link. Packet loss shows up
//!   as retransmission delay: each lost attempt waits one TCP retransmission
//!   timeout (at least `min_rto_ms`, doubling), never as a lost message.
//! - **Gossip frames** are datagram-like: each is lost with probability
//!   `loss` (plus any loss fault), may be duplicated or delayed by faults, and
//!   carries no ordering guarantee.
//!
//! Sizes count the encoded payload plus a fixed allowance for libp2p framing
//! ([`DIRECT_OVERHEAD`], [`GOSSIP_OVERHEAD`], …); TCP/IP headers are not
//! counted.

use rand::RngExt;
use rand::rngs::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::queue::{Micros, millis};
use crate::regions;
use crate::rng::{chance, unit};

/// Framing of one request-response exchange: yamux headers, noise tags,
/// the length prefix and the empty acknowledgement.
pub const DIRECT_OVERHEAD: usize = 64;
/// gossipsub fields around a published message: source, sequence number,
/// topic, signature, RPC framing.
pub const GOSSIP_OVERHEAD: usize = 150;
/// A gossipsub control RPC (GRAFT, PRUNE, or the fixed part of IHAVE/IWANT).
pub const CONTROL_OVERHEAD: usize = 40;
/// One message id inside IHAVE / IWANT (source peer id + sequence number).
pub const MESSAGE_ID_BYTES: usize = 46;
/// TCP payload per segment, for the chance that a message loses a packet.
const SEGMENT_BYTES: usize = 1448;

/// Network parameters of a scenario (`[network]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Random peers each node dials; links are symmetric, so a node ends up
    /// with at least this many connections (about twice on average).
    pub peers: usize,
    /// Extra one-way delay, uniform in `[0, jitter_ms]`.
    pub jitter_ms: f64,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Egress bandwidth of each node, in megabits per second.
    pub bandwidth_mbps: f64,
    /// TCP's minimum retransmission timeout.
    pub min_rto_ms: f64,
    /// Round trips a new connection needs (TCP, noise, yamux) before use.
    pub handshake_rtts: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            peers: 4,
            jitter_ms: 5.0,
            loss: 0.0,
            bandwidth_mbps: 100.0,
            min_rto_ms: 200.0,
            handshake_rtts: 2.0,
        }
    }
}

/// What a message is, for accounting and traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Core `Hello`, point to point.
    Hello,
    /// Core Automerge sync step, point to point.
    Sync,
    /// Federated learning (update chunks, evidence), point to point.
    Learn,
    /// Any other point-to-point payload (including undecodable bytes).
    OtherDirect,
    /// A gossip message sent by its author.
    Publish,
    /// A gossip message relayed by a mesh member or served on IWANT.
    Forward,
    /// Lazy-pull announcement.
    IHave,
    /// Lazy-pull request.
    IWant,
    /// Mesh join.
    Graft,
    /// Mesh leave.
    Prune,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 10] = [
        Kind::Hello,
        Kind::Sync,
        Kind::Learn,
        Kind::OtherDirect,
        Kind::Publish,
        Kind::Forward,
        Kind::IHave,
        Kind::IWant,
        Kind::Graft,
        Kind::Prune,
    ];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Hello => "hello",
            Kind::Sync => "sync",
            Kind::Learn => "learn",
            Kind::OtherDirect => "other-direct",
            Kind::Publish => "gossip-publish",
            Kind::Forward => "gossip-forward",
            Kind::IHave => "ihave",
            Kind::IWant => "iwant",
            Kind::Graft => "graft",
            Kind::Prune => "prune",
        }
    }

    /// The kind of an encoded core envelope, read from its variant tag
    /// (postcard writes the enum variant as one varint byte after the version).
    pub fn of_envelope(bytes: &[u8]) -> Kind {
        match bytes.get(1) {
            Some(0) => Kind::Hello,
            // Sync steps and the heads digests that open anti-entropy rounds.
            Some(2 | 4 | 5) => Kind::Sync,
            Some(3) => Kind::Learn,
            _ => Kind::OtherDirect,
        }
    }
}

/// Messages and bytes of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Messages sent.
    pub messages: u64,
    /// Bytes sent, framing included.
    pub bytes: u64,
}

/// Everything the network carried or lost during a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Per [`Kind`], indexed by its position in [`Kind::ALL`].
    pub by_kind: [Count; Kind::ALL.len()],
    /// Gossip frames lost to packet loss.
    pub lost: u64,
    /// Frames a duplication fault delivered twice.
    pub duplicated: u64,
    /// Messages dropped because their link went down in flight.
    pub dropped_link_down: u64,
    /// Messages a test hook dropped on purpose.
    pub dropped_by_hook: u64,
    /// Largest point-to-point payload seen.
    pub max_direct_bytes: usize,
    /// Largest gossip payload seen.
    pub max_gossip_bytes: usize,
}

impl Traffic {
    fn count(&mut self, kind: Kind, bytes: usize) {
        let slot = &mut self.by_kind[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)];
        slot.messages += 1;
        slot.bytes += bytes as u64;
    }

    /// Total messages and bytes.
    pub fn total(&self) -> Count {
        self.by_kind.iter().fold(Count::default(), |a, c| Count {
            messages: a.messages + c.messages,
            bytes: a.bytes + c.bytes,
        })
    }
}

/// Temporary network faults in force (duplication, reordering, extra loss).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Disturbance {
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `reorder_max_ms`.
    pub reorder: f64,
    /// Longest hold-back of a reordered frame.
    pub reorder_max_ms: f64,
    /// Whether duplication and reordering also hit point-to-point messages
    /// (which the real TCP transport never duplicates or reorders: an
    /// adversarial setting for the core, off unless asked for).
    pub direct: bool,
    /// Extra loss probability for gossip frames.
    pub extra_loss: f64,
}

/// When a sent message arrives: not at all, once, or twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// The first (normal) arrival.
    pub first: Option<Micros>,
    /// A duplicate's arrival.
    pub copy: Option<Micros>,
}

/// The network of one run.
#[derive(Debug)]
pub struct Model {
    config: Config,
    site_of: Vec<usize>,
    egress_free: Vec<Micros>,
    rng: ChaCha8Rng,
    /// Faults in force.
    pub disturbance: Disturbance,
    /// What was carried so far.
    pub traffic: Traffic,
}

impl Model {
    /// A network for nodes placed at `site_of[node]`.
    pub fn new(config: Config, site_of: Vec<usize>, rng: ChaCha8Rng) -> Self {
        let n = site_of.len();
        Self {
            config,
            site_of,
            egress_free: vec![0; n],
            rng,
            disturbance: Disturbance::default(),
            traffic: Traffic::default(),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Round-trip time between two nodes, without jitter.
    pub fn rtt_us(&self, a: usize, b: usize) -> Micros {
        millis(regions::rtt_ms(self.site_of[a], self.site_of[b]))
    }

    /// One-way latency between two nodes, without jitter.
    pub fn one_way_us(&self, a: usize, b: usize) -> Micros {
        self.rtt_us(a, b) / 2
    }

    /// How long a new connection between `a` and `b` takes to open.
    pub fn handshake_us(&mut self, a: usize, b: usize) -> Micros {
        let rtt = self.rtt_us(a, b) as f64;
        (rtt * self.config.handshake_rtts) as Micros + self.jitter()
    }

    fn jitter(&mut self) -> Micros {
        millis(unit(&mut self.rng) * self.config.jitter_ms)
    }

    /// Puts `bytes` on `from`'s egress queue; returns when the last bit leaves.
    fn depart(&mut self, now: Micros, from: usize, bytes: usize) -> Micros {
        // One megabit per second is one bit per microsecond.
        let bits_per_us = self.config.bandwidth_mbps.max(1e-3);
        let serialise = ((bytes * 8) as f64 / bits_per_us).ceil() as Micros;
        let start = now.max(self.egress_free[from]);
        self.egress_free[from] = start + serialise;
        start + serialise
    }

    /// A reliable, in-order point-to-point message of `bytes` payload. It
    /// arrives no earlier than `floor` (the previous arrival on this link
    /// direction) unless a reordering fault covers point-to-point traffic.
    pub fn direct(
        &mut self,
        now: Micros,
        (from, to): (usize, usize),
        kind: Kind,
        bytes: usize,
        floor: Micros,
    ) -> Arrivals {
        let wire = bytes + DIRECT_OVERHEAD;
        self.traffic.count(kind, wire);
        self.traffic.max_direct_bytes = self.traffic.max_direct_bytes.max(bytes);
        let left = self.depart(now, from, wire);
        let mut at = left
            + self.one_way_us(from, to)
            + self.jitter()
            + self.retransmit_delay(from, to, wire);
        let d = self.disturbance.clone();
        if d.direct && chance(&mut self.rng, d.reorder) {
            at += millis(unit(&mut self.rng) * d.reorder_max_ms);
        } else {
            at = at.max(floor);
        }
        let copy = (d.direct && chance(&mut self.rng, d.duplicate)).then(|| {
            self.traffic.duplicated += 1;
            at + self.jitter() + 1
        });
        Arrivals {
            first: Some(at),
            copy,
        }
    }

    /// Time lost to TCP retransmissions of a `wire`-byte message.
    fn retransmit_delay(&mut self, from: usize, to: usize, wire: usize) -> Micros {
        let loss = self.config.loss;
        if loss <= 0.0 {
            return 0;
        }
        let segments = wire.div_ceil(SEGMENT_BYTES) as i32;
        let p = 1.0 - (1.0 - loss).powi(segments);
        let mut rto = millis(self.config.min_rto_ms).max(self.rtt_us(from, to) * 3 / 2);
        let mut delay = 0;
        for _ in 0..8 {
            if !chance(&mut self.rng, p) {
                break;
            }
            delay += rto;
            rto *= 2;
        }
        delay
    }

    /// A best-effort gossip frame of `wire` bytes (framing included).
    pub fn datagram(
        &mut self,
        now: Micros,
        (from, to): (usize, usize),
        kind: Kind,
        wire: usize,
    ) -> Arrivals {
        self.traffic.count(kind, wire);
        let left = self.depart(now, from, wire);
        let d = self.disturbance.clone();
        if chance(&mut self.rng, (self.config.loss + d.extra_loss).min(1.0)) {
            self.traffic.lost += 1;
            return Arrivals::default();
        }
        let mut at = left + self.one_way_us(from, to) + self.jitter();
        if chance(&mut self.rng, d.reorder) {
            at += millis(unit(&mut self.rng) * d.reorder_max_ms);
        }
        let copy = chance(&mut self.rng, d.duplicate).then(|| {
            self.traffic.duplicated += 1;
            at + self.jitter() + self.rng.random_range(1..1000)
        });
        Arrivals {
            first: Some(at),
            copy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Streams;

    fn model(config: Config) -> Model {
        // Node 0 and 1 in Frankfurt, node 2 in Sydney.
        let sites = vec![3, 3, 7];
        Model::new(config, sites, Streams::new(1).stream("network"))
    }

    fn quiet() -> Config {
        Config {
            jitter_ms: 0.0,
            bandwidth_mbps: 1_000_000.0,
            ..Config::default()
        }
    }

    #[test]
    fn latency_is_half_the_round_trip() {
        let mut m = model(quiet());
        // Plus one microsecond of serialisation at this bandwidth.
        let a = m.direct(0, (0, 2), Kind::Sync, 100, 0);
        assert_eq!(a.first, Some(millis(125.0) + 1));
        let b = m.direct(0, (1, 0), Kind::Sync, 100, 0);
        assert_eq!(b.first, Some(millis(0.75) + 1));
    }

    #[test]
    fn point_to_point_messages_stay_in_order() {
        let mut m = model(Config {
            jitter_ms: 50.0,
            ..quiet()
        });
        let mut floor = 0;
        for i in 0..200 {
            let at = m
                .direct(i * 10, (0, 2), Kind::Sync, 10, floor)
                .first
                .unwrap();
            assert!(at >= floor);
            floor = at;
        }
    }

    #[test]
    fn bandwidth_queues_messages_behind_each_other() {
        let mut m = model(Config {
            bandwidth_mbps: 8.0, // one byte per microsecond
            ..quiet()
        });
        let first = m.datagram(0, (0, 1), Kind::Publish, 1_000).first.unwrap();
        let second = m.datagram(0, (0, 1), Kind::Publish, 1_000).first.unwrap();
        assert_eq!(second - first, 1_000);
        // Another node's egress is independent.
        let other = m.datagram(0, (1, 0), Kind::Publish, 1_000).first.unwrap();
        assert_eq!(other, first);
    }

    #[test]
    fn loss_drops_gossip_but_only_delays_direct_messages() {
        let mut m = model(Config {
            loss: 0.3,
            ..quiet()
        });
        let mut lost = 0;
        let mut delayed = 0;
        for i in 0..1_000 {
            if m.datagram(i, (0, 1), Kind::Forward, 200).first.is_none() {
                lost += 1;
            }
            let at = m.direct(i, (0, 1), Kind::Sync, 200, 0).first.unwrap();
            if at - i >= millis(200.0) {
                delayed += 1;
            }
        }
        assert!((200..400).contains(&lost), "{lost}");
        assert!((200..400).contains(&delayed), "{delayed}");
        assert_eq!(m.traffic.lost, lost);
    }

    #[test]
    fn disturbances_duplicate_and_reorder_gossip() {
        let mut m = model(quiet());
        m.disturbance = Disturbance {
            duplicate: 1.0,
            reorder: 1.0,
            reorder_max_ms: 100.0,
            ..Disturbance::default()
        };
        let a = m.datagram(0, (0, 1), Kind::Forward, 200);
        assert!(a.first.is_some() && a.copy.is_some());
        let direct = m.direct(0, (0, 1), Kind::Sync, 200, 0);
        assert_eq!(
            direct.copy, None,
            "point-to-point is untouched unless asked"
        );
        assert_eq!(m.traffic.duplicated, 1);
    }

    #[test]
    fn envelope_kinds_match_the_decoder() {
        use mc_protocols::{
            Changes, DocId, Hello, LearnMessage, MAX_MESSAGE_BYTES, Message, SyncMessage, encode,
        };
        let hello = Message::Hello(Hello {
            region: "r".into(),
            version: "v".into(),
        });
        let sync = Message::Sync(SyncMessage {
            doc: DocId::Knowledge { shard: 0 },
            data: vec![1; 300],
        });
        let changes = Message::Changes(vec![Changes {
            doc: DocId::Knowledge { shard: 0 },
            bytes: vec![2; 3],
        }]);
        assert_eq!(
            Kind::of_envelope(&encode(&hello, MAX_MESSAGE_BYTES).unwrap()),
            Kind::Hello
        );
        assert_eq!(
            Kind::of_envelope(&encode(&sync, MAX_MESSAGE_BYTES).unwrap()),
            Kind::Sync
        );
        assert_eq!(
            Kind::of_envelope(&encode(&changes, MAX_MESSAGE_BYTES).unwrap()),
            Kind::OtherDirect
        );
        let learn = Message::Learn(LearnMessage::UpdateChunk {
            campaign: [0; 16],
            round: 1,
            chunk: vec![3; 40],
        });
        assert_eq!(
            Kind::of_envelope(&encode(&learn, MAX_MESSAGE_BYTES).unwrap()),
            Kind::Learn
        );
        assert_eq!(Kind::of_envelope(&[]), Kind::OtherDirect);
    }
}
