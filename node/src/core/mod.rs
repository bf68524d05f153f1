//! The sans-IO node core: every decision an `mc-node` makes, and nothing else.
//!
//! [`Node`] is a state machine. A driver feeds it [`Input`]s with
//! [`Node::handle`], each stamped with the current time, and then drains the
//! [`Output`]s it queued with [`Node::poll_output`] until that returns `None`.
//! The core never reads a clock, opens a socket, spawns a task, touches a disk
//! or draws from a global RNG: time arrives with every input, randomness comes
//! from a generator seeded at construction, timers are outputs
//! ([`Output::ScheduleTimer`]) whose expiry comes back as an input
//! ([`Input::TimerExpired`]). So the same code runs under the real driver
//! (`crate::runtime`: tokio, libp2p, sled, axum) and under the simulator,
//! and a seed reproduces a run.
//!
//! # Call order
//!
//! 1. [`Node::new`] with the configuration, the store's [`Restored`] document,
//!    a seed and the current time; drain outputs (the first timer).
//! 2. For every event: [`Node::handle`] then drain [`Node::poll_output`].
//!    Drivers must apply outputs in order, and must make a
//!    [`Output::Persist`] batch durable before sending any later
//!    [`Output::Reply`] — that is what makes an acknowledged write survive
//!    `kill -9`.
//!
//! # Replication
//!
//! A local edit is persisted, then broadcast as raw Automerge changes on the
//! knowledge topic (fast, best effort). Every connected peer also has an
//! Automerge sync session; it is started on connect and offered every
//! `sync_interval_ms` (anti-entropy), which repairs whatever gossip lost. A
//! change too large for gossip, or a broadcast the transport could not send,
//! is handed to sync at once rather than dropped.

pub mod api;
pub mod store;

use std::collections::{BTreeMap, VecDeque};

use mc_crdt::{ActorId, KnowledgeBase, SyncSession};
use mc_protocols::{
    Changes, DocId, Hello, MAX_GOSSIP_MESSAGE_BYTES, MAX_MESSAGE_BYTES, Message, NodeId,
    SyncMessage,
};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, RngExt, SeedableRng};

pub use api::{
    ApiError, ApiRequest, ApiResponse, Counters, KnowledgeStatus, PeerStatus, RequestId, Status,
};
pub use store::{Restored, StoreOp};

/// Milliseconds since the Unix epoch: wall-clock time in the real node,
/// virtual time in the simulator.
pub type Millis = u64;

/// Gossip topics the core publishes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// Changes to the knowledge document.
    Knowledge,
}

impl Topic {
    /// Every topic, for drivers that subscribe at start.
    pub const ALL: [Topic; 1] = [Topic::Knowledge];

    /// The topic's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Knowledge => "mc/knowledge/1",
        }
    }
}

/// Timers the core asks the driver to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Offer a sync round to every connected peer.
    AntiEntropy,
}

/// Tunables of the core.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The region this node serves, e.g. `us-east`.
    pub region: String,
    /// Software version reported to peers and on `/status`.
    pub version: String,
    /// Push local changes by gossip. Without it, only anti-entropy spreads them.
    pub gossip: bool,
    /// How often every peer is offered a sync round.
    pub sync_interval_ms: Millis,
    /// Largest encoded gossip message; larger changes go by sync.
    pub max_gossip_bytes: usize,
}

impl Config {
    /// Defaults for a region: gossip on, anti-entropy every 5 s.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            gossip: true,
            sync_interval_ms: 5_000,
            max_gossip_bytes: MAX_GOSSIP_MESSAGE_BYTES,
        }
    }
}

/// Something that happened to the node.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Time passed; nothing else happened.
    Tick,
    /// A peer's message arrived, by gossip or point to point.
    Received {
        /// The peer that sent it (the author, for gossip).
        from: NodeId,
        /// The encoded envelope, untrusted.
        bytes: Vec<u8>,
    },
    /// The first connection to a peer opened.
    PeerConnected(NodeId),
    /// The last connection to a peer closed.
    PeerDisconnected(NodeId),
    /// A point-to-point message to this peer could not be delivered.
    SendFailed(NodeId),
    /// A broadcast could not be published (e.g. no subscribed peer yet).
    BroadcastFailed(Topic),
    /// The transport now listens on these addresses.
    Listening(Vec<String>),
    /// A request from the API.
    Api {
        /// Echoed in the matching [`Output::Reply`].
        id: RequestId,
        /// The request.
        request: ApiRequest,
    },
    /// A timer set by [`Output::ScheduleTimer`] expired.
    TimerExpired(Timer),
}

/// Something the core wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Deliver `bytes` to one peer, reliably and in order.
    Send {
        /// The peer.
        to: NodeId,
        /// An encoded envelope.
        bytes: Vec<u8>,
    },
    /// Publish `bytes` to every node subscribed to `topic`, best effort.
    Broadcast {
        /// The topic.
        topic: Topic,
        /// An encoded envelope.
        bytes: Vec<u8>,
    },
    /// Apply these writes atomically and durably before any later reply.
    Persist(Vec<StoreOp>),
    /// Answer an API request.
    Reply {
        /// The request's id.
        id: RequestId,
        /// The answer.
        response: Result<ApiResponse, ApiError>,
    },
    /// Feed [`Input::TimerExpired`] back at `at` (replaces an earlier one of the same kind).
    ScheduleTimer {
        /// Which timer.
        timer: Timer,
        /// When, in [`Millis`].
        at: Millis,
    },
}

/// Errors that stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The persisted knowledge document could not be loaded.
    #[error("cannot load the stored knowledge document: {0}")]
    Knowledge(#[from] mc_crdt::Error),
}

/// What the core knows about one connected peer.
#[derive(Debug)]
struct Peer {
    region: Option<String>,
    sync: SyncSession,
    last_sync_ms: Option<Millis>,
}

impl Peer {
    fn new() -> Self {
        Self {
            region: None,
            sync: SyncSession::new(),
            last_sync_ms: None,
        }
    }
}

/// The node state machine. See the [module docs](self) for the call order.
#[derive(Debug)]
pub struct Node {
    config: Config,
    id: NodeId,
    rng: ChaCha8Rng,
    started_at: Millis,
    now: Millis,
    kb: KnowledgeBase,
    next_chunk_seq: u64,
    peers: BTreeMap<NodeId, Peer>,
    listen_addrs: Vec<String>,
    counters: Counters,
    outputs: VecDeque<Output>,
}

impl Node {
    /// Starts a node from its persisted document. `seed` drives every random
    /// choice, including the document's Automerge actor id (fresh per start,
    /// so a restart after losing unflushed writes never reuses a sequence
    /// number).
    pub fn new(
        config: Config,
        id: NodeId,
        restored: Restored,
        seed: u64,
        now: Millis,
    ) -> Result<Self, StartError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut actor = [0u8; 16];
        rng.fill_bytes(&mut actor);
        let next_chunk_seq = restored.next_seq();
        let kb = KnowledgeBase::load(
            restored.snapshot.as_deref(),
            restored.chunks.iter().map(|(_, bytes)| bytes.as_slice()),
            ActorId::from(actor.as_slice()),
        )?;
        let mut node = Self {
            config,
            id,
            rng,
            started_at: now,
            now,
            kb,
            next_chunk_seq,
            peers: BTreeMap::new(),
            listen_addrs: Vec::new(),
            counters: Counters::default(),
            outputs: VecDeque::new(),
        };
        node.schedule_anti_entropy();
        Ok(node)
    }

    /// This node's identity.
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connected peers, sorted.
    pub fn peers(&self) -> impl Iterator<Item = &NodeId> {
        self.peers.keys()
    }

    /// The knowledge document's current heads (hex, sorted).
    pub fn knowledge_heads(&mut self) -> Vec<String> {
        self.kb.heads()
    }

    /// Read access to the knowledge document, for checkers and tests.
    pub fn knowledge(&self) -> &KnowledgeBase {
        &self.kb
    }

    /// Event counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Feeds one input at time `now` (never earlier than the previous input's).
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.now = self.now.max(now);
        match input {
            Input::Tick => {}
            Input::Received { from, bytes } => self.on_message(from, &bytes),
            Input::PeerConnected(peer) => self.on_peer_connected(peer),
            Input::PeerDisconnected(peer) => {
                self.peers.remove(&peer);
            }
            Input::SendFailed(peer) => {
                // The peer may have lost what we sent; start its session over.
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.sync.reset();
                }
            }
            Input::BroadcastFailed(_) => {
                self.counters.broadcast_failures += 1;
                self.sync_all_peers();
            }
            Input::Listening(addrs) => self.listen_addrs = addrs,
            Input::Api { id, request } => {
                let response = self.on_api(request);
                self.outputs.push_back(Output::Reply { id, response });
            }
            Input::TimerExpired(Timer::AntiEntropy) => {
                self.sync_all_peers();
                self.schedule_anti_entropy();
            }
        }
    }

    /// The next thing the driver must do, in order; `None` when there is nothing.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn on_peer_connected(&mut self, peer: NodeId) {
        self.peers.insert(peer.clone(), Peer::new());
        let hello = Message::Hello(Hello {
            region: self.config.region.clone(),
            version: self.config.version.clone(),
        });
        self.send(&peer, &hello);
        self.offer_sync(&peer);
    }

    fn on_message(&mut self, from: NodeId, bytes: &[u8]) {
        let message = match mc_protocols::decode(bytes, MAX_MESSAGE_BYTES) {
            Ok(message) => message,
            Err(error) => {
                self.counters.rejected_messages += 1;
                tracing::warn!(peer = %from, %error, "rejected a malformed message");
                return;
            }
        };
        match message {
            Message::Hello(hello) => {
                // Only connected peers are tracked: a message the transport
                // delivers after the disconnect must not resurrect the peer.
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.region = Some(hello.region);
                }
            }
            Message::Changes(Changes {
                doc: DocId::Knowledge,
                bytes,
            }) => match self.kb.apply_changes(&bytes) {
                Ok(changed) => {
                    self.counters.gossip_received += 1;
                    if changed {
                        self.persist_increment();
                    }
                }
                Err(error) => {
                    self.counters.rejected_messages += 1;
                    tracing::warn!(peer = %from, %error, "rejected gossiped changes");
                }
            },
            Message::Sync(SyncMessage {
                doc: DocId::Knowledge,
                data,
            }) => self.on_sync(from, &data),
        }
    }

    fn on_sync(&mut self, from: NodeId, data: &[u8]) {
        self.counters.sync_received += 1;
        let Some(peer) = self.peers.get_mut(&from) else {
            // A late message from a peer that has disconnected: its session
            // is gone, and the next connection starts a fresh one.
            tracing::debug!(peer = %from, "dropped a sync message from a disconnected peer");
            return;
        };
        match self.kb.receive_sync_message(&mut peer.sync, data) {
            Ok(changed) => {
                peer.last_sync_ms = Some(self.now);
                self.offer_sync(&from);
                if changed {
                    self.persist_increment();
                    // Pass what sync brought to the other peers now rather than
                    // at their next interval, so a change crosses the mesh in
                    // one interval even without gossip. Peers that already have
                    // it answer with heads only.
                    self.sync_all_peers();
                }
            }
            Err(error) => {
                self.counters.rejected_messages += 1;
                peer.sync.reset();
                tracing::warn!(peer = %from, %error, "rejected a sync message");
            }
        }
    }

    fn on_api(&mut self, request: ApiRequest) -> Result<ApiResponse, ApiError> {
        let doc_error = |e: mc_crdt::Error| ApiError::Document(e.to_string());
        match request {
            ApiRequest::Put { key, value } => {
                validate_key(&key)?;
                self.kb
                    .put(&key, &value, self.id.as_str(), self.now)
                    .map_err(doc_error)?;
                self.persist_increment();
                self.publish_local_change();
                let entry = self.kb.get(&key).map_err(doc_error)?;
                entry
                    .map(ApiResponse::Entry)
                    .ok_or_else(|| ApiError::Document("entry vanished after put".into()))
            }
            ApiRequest::Get { key } => {
                validate_key(&key)?;
                match self.kb.get(&key).map_err(doc_error)? {
                    Some(entry) => Ok(ApiResponse::Entry(entry)),
                    None => Err(ApiError::NotFound(key)),
                }
            }
            ApiRequest::Delete { key } => {
                validate_key(&key)?;
                if !self.kb.delete(&key).map_err(doc_error)? {
                    return Err(ApiError::NotFound(key));
                }
                self.persist_increment();
                self.publish_local_change();
                Ok(ApiResponse::Deleted)
            }
            ApiRequest::List { prefix } => Ok(ApiResponse::Entries(
                self.kb.list(&prefix).map_err(doc_error)?,
            )),
            ApiRequest::Status => Ok(ApiResponse::Status(Box::new(self.status()))),
        }
    }

    /// The status report for `GET /status`.
    pub fn status(&mut self) -> Status {
        let stats = self.kb.stats();
        let peers = self
            .peers
            .iter()
            .map(|(id, peer)| PeerStatus {
                peer_id: id.to_string(),
                region: peer.region.clone(),
                last_sync_ms: peer.last_sync_ms,
                in_sync: peer.sync.in_sync_with(&mut self.kb),
            })
            .collect();
        Status {
            peer_id: self.id.to_string(),
            region: self.config.region.clone(),
            version: self.config.version.clone(),
            uptime_s: self.now.saturating_sub(self.started_at) as f64 / 1000.0,
            listen_addrs: self.listen_addrs.clone(),
            gossip_enabled: self.config.gossip,
            peers,
            knowledge: KnowledgeStatus {
                entries: stats.entries,
                heads: stats.heads,
                changes: stats.changes,
                doc_bytes: stats.saved_bytes,
            },
            counters: self.counters.clone(),
        }
    }

    /// Broadcasts the change the last local edit made, or hands it to sync
    /// when gossip is off or the change does not fit a gossip message.
    fn publish_local_change(&mut self) {
        let Some(bytes) = self.kb.last_local_change() else {
            return;
        };
        if !self.config.gossip {
            return; // anti-entropy carries it at the next interval
        }
        let message = Message::Changes(Changes {
            doc: DocId::Knowledge,
            bytes,
        });
        match mc_protocols::encode(&message, self.config.max_gossip_bytes) {
            Ok(bytes) => {
                self.counters.gossip_published += 1;
                self.outputs.push_back(Output::Broadcast {
                    topic: Topic::Knowledge,
                    bytes,
                });
            }
            Err(error) => {
                self.counters.gossip_oversize_fallbacks += 1;
                tracing::info!(%error, "change too large for gossip, sending it by sync");
                self.sync_all_peers();
            }
        }
    }

    /// Queues the document's unsaved changes as the next incremental chunk,
    /// compacting the stored form when the chunks have grown large.
    fn persist_increment(&mut self) {
        let chunk = self.kb.save_incremental();
        if chunk.is_empty() {
            return;
        }
        let mut ops = vec![StoreOp::Put {
            key: store::chunk_key(self.next_chunk_seq),
            value: chunk,
        }];
        self.next_chunk_seq += 1;
        if self.kb.needs_compaction() {
            self.counters.compactions += 1;
            ops = vec![
                StoreOp::Put {
                    key: store::KNOWLEDGE_SNAPSHOT_KEY.to_string(),
                    value: self.kb.compact(),
                },
                StoreOp::DeletePrefix(store::KNOWLEDGE_CHUNK_PREFIX.to_string()),
            ];
            self.next_chunk_seq = 0;
        }
        self.outputs.push_back(Output::Persist(ops));
    }

    fn sync_all_peers(&mut self) {
        let peers: Vec<NodeId> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.offer_sync(&peer);
        }
    }

    /// Sends the next step of the sync protocol to `peer`, if there is one.
    fn offer_sync(&mut self, peer: &NodeId) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let Some(data) = self.kb.generate_sync_message(&mut state.sync) else {
            return;
        };
        self.counters.sync_sent += 1;
        let message = Message::Sync(SyncMessage {
            doc: DocId::Knowledge,
            data,
        });
        self.send(peer, &message);
    }

    fn send(&mut self, to: &NodeId, message: &Message) {
        match mc_protocols::encode(message, MAX_MESSAGE_BYTES) {
            Ok(bytes) => self.outputs.push_back(Output::Send {
                to: to.clone(),
                bytes,
            }),
            Err(error) => {
                tracing::error!(peer = %to, %error, "cannot encode a message for a peer");
                if let Some(p) = self.peers.get_mut(to) {
                    p.sync.reset();
                }
            }
        }
    }

    fn schedule_anti_entropy(&mut self) {
        // Up to 20 % early, never late: nodes started together do not sync in
        // lockstep, and `sync_interval_ms` stays an upper bound on the wait.
        let interval = self.config.sync_interval_ms.max(1);
        let jitter = self.rng.random_range(0..=interval / 5);
        let at = self.now + interval - jitter;
        self.outputs.push_back(Output::ScheduleTimer {
            timer: Timer::AntiEntropy,
            at,
        });
    }
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::InvalidKey("the key is empty".into()));
    }
    if key.len() > api::MAX_KEY_BYTES {
        return Err(ApiError::InvalidKey(format!(
            "the key is {} bytes, the limit is {}",
            key.len(),
            api::MAX_KEY_BYTES
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::InvalidKey(
            "the key contains control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
