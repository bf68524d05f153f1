//! A gossipsub-like broadcast layer, one [`Router`] per simulated node.
//!
//! What it keeps from gossipsub (v1.1, as libp2p configures it for `mc-node`):
//!
//! - **Mesh** of degree `d` among a node's connections, kept between `d_low`
//!   and `d_high` at every heartbeat with GRAFT / PRUNE frames.
//! - **Eager push**: a node's own message goes to every connected peer
//!   (`flood_publish`, as the real node sets it); a relayed message goes to
//!   the mesh, minus the peer it came from and its author.
//! - **Lazy pull**: every heartbeat (700 ms) a node announces the ids it saw
//!   in the last `history_gossip` heartbeats (IHAVE) to
//!   `max(d_lazy, gossip_factor × non-mesh peers)` random non-mesh peers,
//!   which ask for what they miss (IWANT) and get it from the message cache
//!   (`history_length` heartbeats).
//! - **Duplicate suppression**: a seen-set of message ids (kept
//!   `seen_ttl_s`); a node hands a message to its core once and counts every
//!   later copy as a duplicate.
//!
//! Where it differs from the real gossipsub (documented in the crate docs):
//! no peer scoring, no IDONTWANT, no fanout (every node subscribes to the one
//! topic), no backoff after PRUNE, no outbound-mesh quota, no promise tracking
//! for IWANT, and frames are datagrams that the network model may lose or
//! duplicate, while the real ones ride on a TCP stream and are lost only
//! when a connection or a send queue drops them.

use std::collections::{BTreeSet, VecDeque};

use rand::rngs::ChaCha8Rng;
use rand::seq::index;
use serde::{Deserialize, Serialize};

use crate::network::{CONTROL_OVERHEAD, GOSSIP_OVERHEAD, Kind, MESSAGE_ID_BYTES};
use crate::queue::Micros;

/// gossipsub parameters (`[gossip]`); defaults are those of `mc-node`'s transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Target mesh degree.
    pub d: usize,
    /// Below this, graft up to `d` at the next heartbeat.
    pub d_low: usize,
    /// Above this, prune down to `d` at the next heartbeat.
    pub d_high: usize,
    /// Least number of peers that get IHAVE each heartbeat.
    pub d_lazy: usize,
    /// Share of non-mesh peers that get IHAVE, if that is more than `d_lazy`.
    pub gossip_factor: f64,
    /// Heartbeat period.
    pub heartbeat_ms: f64,
    /// Heartbeats a message stays in the cache that IWANT is served from.
    pub history_length: usize,
    /// Heartbeats of ids announced in IHAVE.
    pub history_gossip: usize,
    /// How long a seen message id is remembered.
    pub seen_ttl_s: f64,
    /// Send a node's own messages to every connected peer, not only the mesh.
    pub flood_publish: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            d: 6,
            d_low: 4,
            d_high: 12,
            d_lazy: 6,
            gossip_factor: 0.25,
            heartbeat_ms: 700.0,
            history_length: 5,
            history_gossip: 3,
            seen_ttl_s: 120.0,
            flood_publish: true,
        }
    }
}

/// Identifies one published message (the simulator numbers them in order).
pub type MsgId = u64;

/// One gossipsub frame between two neighbours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A full message.
    Message(MsgId),
    /// "I have these".
    IHave(Vec<MsgId>),
    /// "Send me these".
    IWant(Vec<MsgId>),
    /// "Add me to your mesh".
    Graft,
    /// "Remove me from your mesh".
    Prune,
}

impl Frame {
    /// Accounting kind; `by_author` tells a publish from a relay.
    pub fn kind(&self, by_author: bool) -> Kind {
        match self {
            Frame::Message(_) if by_author => Kind::Publish,
            Frame::Message(_) => Kind::Forward,
            Frame::IHave(_) => Kind::IHave,
            Frame::IWant(_) => Kind::IWant,
            Frame::Graft => Kind::Graft,
            Frame::Prune => Kind::Prune,
        }
    }

    /// Size on the wire; `payload` is the message's size for `Message`.
    pub fn wire_bytes(&self, payload: usize) -> usize {
        match self {
            Frame::Message(_) => payload + GOSSIP_OVERHEAD,
            Frame::IHave(ids) | Frame::IWant(ids) => {
                CONTROL_OVERHEAD + ids.len() * MESSAGE_ID_BYTES
            }
            Frame::Graft | Frame::Prune => CONTROL_OVERHEAD,
        }
    }
}

/// A published message, shared by every router.
#[derive(Debug, Clone)]
pub struct Published {
    /// The node that published it.
    pub author: usize,
    /// When.
    pub at: Micros,
    /// The core's encoded envelope.
    pub bytes: Vec<u8>,
}

/// Every message published in a run, indexed by [`MsgId`].
#[derive(Debug, Default)]
pub struct Messages {
    items: Vec<Published>,
}

impl Messages {
    /// Stores a message; returns its id.
    pub fn add(&mut self, message: Published) -> MsgId {
        self.items.push(message);
        (self.items.len() - 1) as MsgId
    }

    /// Message `id`.
    pub fn get(&self, id: MsgId) -> &Published {
        &self.items[id as usize]
    }

    /// The first id published at or after `at` (ids grow with time).
    pub fn first_since(&self, at: Micros) -> MsgId {
        self.items.partition_point(|m| m.at < at) as MsgId
    }

    /// Number of messages published.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether none was published.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What a received frame meant for the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A message seen for the first time: hand it to the core.
    Deliver(MsgId),
    /// A message seen before.
    Duplicate,
    /// A control frame.
    Control,
}

/// Per-node gossip state.
#[derive(Debug, Clone)]
pub struct Router {
    mesh: BTreeSet<usize>,
    seen: BTreeSet<MsgId>,
    /// Message cache by heartbeat; the front is the current heartbeat.
    windows: VecDeque<Vec<MsgId>>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl Router {
    /// A router with an empty mesh.
    pub fn new() -> Self {
        Self {
            mesh: BTreeSet::new(),
            seen: BTreeSet::new(),
            windows: VecDeque::from([Vec::new()]),
        }
    }

    /// The current mesh peers.
    pub fn mesh(&self) -> &BTreeSet<usize> {
        &self.mesh
    }

    /// Whether `id` was seen.
    pub fn has_seen(&self, id: MsgId) -> bool {
        self.seen.contains(&id)
    }

    fn remember(&mut self, id: MsgId) {
        self.seen.insert(id);
        if let Some(window) = self.windows.front_mut() {
            window.push(id);
        }
    }

    /// Publishes this node's message `id` to its connected peers `up`.
    pub fn publish(
        &mut self,
        id: MsgId,
        up: &[usize],
        config: &Config,
        out: &mut Vec<(usize, Frame)>,
    ) {
        self.remember(id);
        for peer in up {
            if config.flood_publish || self.mesh.contains(peer) {
                out.push((*peer, Frame::Message(id)));
            }
        }
    }

    /// Handles a frame from neighbour `from`; `author` names a message's author.
    pub fn on_frame(
        &mut self,
        from: usize,
        frame: Frame,
        author: impl Fn(MsgId) -> usize,
        config: &Config,
        out: &mut Vec<(usize, Frame)>,
    ) -> Outcome {
        match frame {
            Frame::Message(id) => {
                if self.seen.contains(&id) {
                    return Outcome::Duplicate;
                }
                self.remember(id);
                let origin = author(id);
                for peer in &self.mesh {
                    if *peer != from && *peer != origin {
                        out.push((*peer, Frame::Message(id)));
                    }
                }
                Outcome::Deliver(id)
            }
            Frame::IHave(ids) => {
                let wanted: Vec<MsgId> = ids
                    .into_iter()
                    .filter(|id| !self.seen.contains(id))
                    .collect();
                if !wanted.is_empty() {
                    out.push((from, Frame::IWant(wanted)));
                }
                Outcome::Control
            }
            Frame::IWant(ids) => {
                for id in ids {
                    if self.windows.iter().any(|w| w.contains(&id)) {
                        out.push((from, Frame::Message(id)));
                    }
                }
                Outcome::Control
            }
            Frame::Graft => {
                if self.mesh.len() >= config.d_high {
                    out.push((from, Frame::Prune));
                } else {
                    self.mesh.insert(from);
                }
                Outcome::Control
            }
            Frame::Prune => {
                self.mesh.remove(&from);
                Outcome::Control
            }
        }
    }

    /// Forgets a neighbour whose connection closed.
    pub fn peer_down(&mut self, peer: usize) {
        self.mesh.remove(&peer);
    }

    /// Forgets seen ids older than `first_kept`.
    pub fn forget_before(&mut self, first_kept: MsgId) {
        if self.seen.first().is_some_and(|id| *id < first_kept) {
            self.seen = self.seen.split_off(&first_kept);
        }
    }

    /// The periodic heartbeat: mesh upkeep, IHAVE, message-cache shift.
    /// `up` is the sorted list of connected peers.
    pub fn heartbeat(
        &mut self,
        up: &[usize],
        rng: &mut ChaCha8Rng,
        config: &Config,
        out: &mut Vec<(usize, Frame)>,
    ) {
        self.mesh.retain(|p| up.binary_search(p).is_ok());
        if self.mesh.len() < config.d_low {
            let candidates: Vec<usize> = up
                .iter()
                .copied()
                .filter(|p| !self.mesh.contains(p))
                .collect();
            let want = (config.d.saturating_sub(self.mesh.len())).min(candidates.len());
            for i in index::sample(rng, candidates.len(), want).iter() {
                self.mesh.insert(candidates[i]);
                out.push((candidates[i], Frame::Graft));
            }
        } else if self.mesh.len() > config.d_high {
            let members: Vec<usize> = self.mesh.iter().copied().collect();
            let excess = members.len() - config.d;
            for i in index::sample(rng, members.len(), excess).iter() {
                self.mesh.remove(&members[i]);
                out.push((members[i], Frame::Prune));
            }
        }
        let ids: Vec<MsgId> = self
            .windows
            .iter()
            .take(config.history_gossip)
            .flatten()
            .copied()
            .collect();
        if !ids.is_empty() {
            let others: Vec<usize> = up
                .iter()
                .copied()
                .filter(|p| !self.mesh.contains(p))
                .collect();
            let share = (config.gossip_factor * others.len() as f64) as usize;
            let count = config.d_lazy.max(share).min(others.len());
            for i in index::sample(rng, others.len(), count).iter() {
                out.push((others[i], Frame::IHave(ids.clone())));
            }
        }
        self.windows.push_front(Vec::new());
        self.windows.truncate(config.history_length.max(1));
    }
}

#[cfg(test)]
mod tests;
