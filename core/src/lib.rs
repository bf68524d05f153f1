//! # mc-core — the sans-IO node core
//!
//! Every decision an `mc-node` makes, and nothing else. This crate depends on
//! pure logic only (`mc-protocols`, `mc-crdt`, `mc-learn-core`, serde, rand,
//! tracing): no tokio, libp2p, sled, axum or tch, so "no I/O in the core" is
//! checked by the compiler rather than kept by habit.
//!
//! [`Node`] is a state machine. A driver feeds it [`Input`]s with
//! [`Node::handle`], each stamped with the current time, and then drains the
//! [`Output`]s it queued with [`Node::poll_output`] until that returns `None`.
//! The core never reads a clock, opens a socket, spawns a task, touches a disk
//! or draws from a global RNG: time arrives with every input, randomness comes
//! from a generator seeded at construction, timers are outputs
//! ([`Output::ScheduleTimer`]) whose expiry comes back as an input
//! ([`Input::TimerExpired`]). So the same code runs under the real driver
//! (`mc-node`'s runtime: tokio, libp2p, sled, axum) and under the simulator,
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
//! # Group commit
//!
//! A driver may feed several inputs before it drains: everything fed between
//! two drains is one *batch*. The batch's local writes become **one**
//! Automerge change, everything the batch changed (local writes, received
//! gossip and sync) is **one** `Persist`, its local changes are **one**
//! gossip message, and every reply of the batch comes after that `Persist`.
//! So a driver that feeds all the requests and messages that are ready, then
//! drains and flushes once, pays one flush for the lot, and a reply still
//! never precedes the durability of what it acknowledges. A read in the
//! batch sees the batch's earlier writes (they are applied to the document
//! before any other input is handled).
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
pub mod docs;
pub mod learning;
mod replication;
mod requests;
pub mod store;

use std::collections::{BTreeMap, VecDeque};

use mc_crdt::{ActorId, Entry, KnowledgeBase, SyncSession};
use mc_learn_core::ed25519_dalek::SigningKey;
use mc_protocols::{DocId, Hello, MAX_GOSSIP_MESSAGE_BYTES, MAX_MESSAGE_BYTES, Message, NodeId};

use docs::{Documents, OwnedWrite};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, RngExt, SeedableRng};

pub use api::{
    ApiError, ApiRequest, ApiResponse, CampaignSummary, Counters, DocumentInfo, KnowledgeStatus,
    LearningStatus, PeerStatus, RequestId, Status,
};
pub use docs::Documents as DocumentRegistry;
pub use learning::{
    CampaignRequest, CampaignSpec, CampaignView, ClosedBy, FinishedModel, LearnError, Participant,
    RoundRecord, TrainJob, TrainKind, TrainResult,
};
pub use mc_learn_core::CampaignId;
pub use store::{Restored, RestoredDoc, StoreOp};

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
    /// Look for new campaigns and close rounds whose deadline passed.
    Learning,
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
    /// How often to look for new campaigns and round deadlines; `None`
    /// turns federated learning off.
    pub learning_tick_ms: Option<Millis>,
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
            learning_tick_ms: Some(500),
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
    /// The driver finished a [`Output::Train`] job.
    Trained(TrainResult),
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
    /// Run local work for a campaign (training, or the data's moments) and
    /// feed the result back as [`Input::Trained`].
    Train(TrainJob),
    /// A campaign finished: store its model.
    ModelReady(FinishedModel),
    /// This node closed a campaign round (also recorded in the knowledge
    /// document under `campaigns/<id>/rounds/…`): for drivers that watch
    /// campaigns, such as the simulator's checks.
    RoundClosed {
        /// The campaign.
        campaign: CampaignId,
        /// The round as this node recorded it.
        record: RoundRecord,
    },
}

/// Errors that stop a node from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A persisted document could not be loaded.
    #[error("cannot load the stored document {doc}: {source}")]
    Document {
        /// The document.
        doc: DocId,
        /// Why.
        source: mc_crdt::Error,
    },
    /// The knowledge document of a store from before sharding could not be
    /// loaded, so its entries could not be moved into the shards.
    #[error("cannot load the stored (unsharded) knowledge document: {0}")]
    Legacy(mc_crdt::Error),
}

/// What the core knows about one connected peer.
#[derive(Debug, Default)]
struct Peer {
    region: Option<String>,
    /// One Automerge sync session per document, opened on first use.
    sync: BTreeMap<DocId, SyncSession>,
    last_sync_ms: Option<Millis>,
    /// The peer's last heads digest matched ours on every document.
    in_sync: bool,
}

/// What the inputs since the last drain left to finish (see "Group commit"
/// in the [module docs](self)).
#[derive(Debug, Default)]
struct Batch {
    /// Local writes not yet in the documents, with their requests.
    writes: Vec<(RequestId, OwnedWrite)>,
    /// Gossiped changes, checked but not yet applied, per document: a burst
    /// of messages is applied in one pass over each document.
    received: BTreeMap<DocId, Vec<mc_crdt::DecodedChanges>>,
    /// Answers held back until the batch's `Persist` is queued.
    replies: Vec<(RequestId, Result<ApiResponse, ApiError>)>,
    /// The document changed (locally or by a peer) since the last save.
    changed: bool,
}

impl Batch {
    fn is_open(&self) -> bool {
        self.changed
            || !self.writes.is_empty()
            || !self.received.is_empty()
            || !self.replies.is_empty()
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
    docs: Documents,
    peers: BTreeMap<NodeId, Peer>,
    listen_addrs: Vec<String>,
    counters: Counters,
    outputs: VecDeque<Output>,
    batch: Batch,
    learning: learning::Learning,
    /// Knowledge heads when campaigns were last looked for.
    campaigns_seen_at: Vec<String>,
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
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let actor = ActorId::from(actor.as_slice());
        let docs = Documents::load(&restored, &actor)
            .map_err(|(doc, source)| StartError::Document { doc, source })?;
        let mut node = Self {
            config,
            id,
            rng,
            started_at: now,
            now,
            docs,
            peers: BTreeMap::new(),
            listen_addrs: Vec::new(),
            counters: Counters::default(),
            outputs: VecDeque::new(),
            batch: Batch::default(),
            learning: learning::Learning::new(SigningKey::from_bytes(&secret)),
            campaigns_seen_at: Vec::new(),
        };
        node.migrate_legacy(&restored, actor)?;
        node.learning.restore(&restored.campaigns);
        node.schedule_anti_entropy();
        node.schedule_learning();
        Ok(node)
    }

    /// Sets the ed25519 key this node signs its weight updates with (the
    /// real node uses its libp2p identity key, so its peer id names its
    /// key). Without it the key is drawn from the seed. Call before any
    /// campaign starts.
    pub fn set_signing_key(&mut self, secret: [u8; 32]) {
        let learning = std::mem::replace(
            &mut self.learning,
            learning::Learning::new(SigningKey::from_bytes(&secret)),
        );
        self.learning = learning.with_key(SigningKey::from_bytes(&secret));
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

    /// Every document's current heads (`doc:hash`, sorted): equal on two
    /// nodes exactly when they hold the same state.
    pub fn knowledge_heads(&mut self) -> Vec<String> {
        self.docs.heads()
    }

    /// Read access to the documents (the knowledge base across its shards),
    /// for checkers and tests.
    pub fn knowledge(&self) -> &Documents {
        &self.docs
    }

    /// Moves the entries of a store from before sharding into the shards,
    /// keeping each entry's author and time, and removes the old keys in the
    /// same store batch.
    fn migrate_legacy(&mut self, restored: &Restored, actor: ActorId) -> Result<(), StartError> {
        if restored.legacy.is_empty() {
            return Ok(());
        }
        let legacy = KnowledgeBase::load(
            restored.legacy.snapshot.as_deref(),
            restored.legacy.chunks.iter().map(|(_, b)| b.as_slice()),
            actor,
        )
        .map_err(StartError::Legacy)?;
        let entries = legacy.list("").map_err(StartError::Legacy)?;
        tracing::info!(
            entries = entries.len(),
            "moving the unsharded knowledge document into shards"
        );
        self.docs.restore_entries(&entries);
        self.persist_changed();
        // No gossip before start: peers that lack the moved entries sync them.
        let _ = self.docs.take_local_changes();
        if let Some(Output::Persist(ops)) = self.outputs.back_mut() {
            ops.push(StoreOp::DeletePrefix(
                store::LEGACY_CHUNK_PREFIX.to_string(),
            ));
            ops.push(StoreOp::DeletePrefix(
                store::LEGACY_SNAPSHOT_KEY.to_string(),
            ));
        } else {
            self.outputs.push_back(Output::Persist(vec![
                StoreOp::DeletePrefix(store::LEGACY_CHUNK_PREFIX.to_string()),
                StoreOp::DeletePrefix(store::LEGACY_SNAPSHOT_KEY.to_string()),
            ]));
        }
        Ok(())
    }

    /// Event counters since start.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Feeds one input at time `now` (never earlier than the previous input's).
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.now = self.now.max(now);
        // Writes and gossiped changes are staged for the end of the batch;
        // anything else may read the documents, so it sees them applied
        // (`on_message` decides for received messages once it has decoded
        // them).
        let staged = matches!(
            input,
            Input::Received { .. }
                | Input::Api {
                    request: ApiRequest::Put { .. } | ApiRequest::Delete { .. },
                    ..
                }
        );
        if !staged {
            self.apply_pending();
        }
        match input {
            Input::Tick => {}
            Input::Received { from, bytes } => self.on_message(from, &bytes),
            Input::PeerConnected(peer) => self.on_peer_connected(peer),
            Input::PeerDisconnected(peer) => {
                self.peers.remove(&peer);
            }
            Input::SendFailed(peer) => {
                // The peer may have lost what we sent; start its sessions over.
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.sync.clear();
                }
            }
            Input::BroadcastFailed(_) => {
                self.counters.broadcast_failures += 1;
                // The changes reached no one by gossip: a digest round finds
                // the documents that differ and syncs them at once.
                self.send_digests();
            }
            Input::Listening(addrs) => self.listen_addrs = addrs,
            Input::Api {
                id,
                request: ApiRequest::Put { key, value },
            } => self.stage_write(id, OwnedWrite::Put { key, value }),
            Input::Api {
                id,
                request: ApiRequest::Delete { key },
            } => self.stage_write(id, OwnedWrite::Delete { key }),
            Input::Api { id, request } => {
                let response = self.on_api(request);
                self.batch.replies.push((id, response));
            }
            Input::TimerExpired(Timer::AntiEntropy) => {
                self.send_digests();
                self.schedule_anti_entropy();
            }
            Input::TimerExpired(Timer::Learning) => {
                self.scan_campaigns();
                let mut fx = learning::Effects::default();
                self.learning.on_tick(self.now, &mut fx);
                self.apply_learning(fx);
                self.schedule_learning();
            }
            Input::Trained(result) => {
                let mut fx = learning::Effects::default();
                self.learning.on_trained(result, self.now, &mut fx);
                self.apply_learning(fx);
            }
        }
    }

    /// The next thing the driver must do, in order; `None` when there is
    /// nothing. The first call after some inputs closes their batch.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.batch.is_open() {
            self.end_batch();
        }
        self.outputs.pop_front()
    }

    /// Queues a local write for the end of the batch, or refuses it now.
    fn stage_write(&mut self, id: RequestId, write: OwnedWrite) {
        match validate_key(write.key()) {
            Ok(()) => self.batch.writes.push((id, write)),
            Err(error) => self.batch.replies.push((id, Err(error))),
        }
    }

    /// Applies what the batch staged: received changes, then local writes.
    fn apply_pending(&mut self) {
        for (doc, batches) in std::mem::take(&mut self.batch.received) {
            let Some(kb) = self.docs.doc_mut(&doc) else {
                continue;
            };
            match kb.apply_decoded(batches) {
                Ok(changed) => {
                    if changed {
                        self.docs.mark_changed(&doc);
                        self.batch.changed = true;
                    }
                }
                Err(error) => {
                    self.counters.rejected_messages += 1;
                    tracing::warn!(%doc, %error, "rejected gossiped changes");
                }
            }
        }
        self.apply_pending_writes();
    }

    /// Applies the batch's pending writes to the documents, one change per
    /// document, and queues their answers (sent at the end of the batch).
    fn apply_pending_writes(&mut self) {
        if self.batch.writes.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.batch.writes);
        let writes: Vec<OwnedWrite> = pending.iter().map(|(_, w)| w.clone()).collect();
        let results = self.docs.apply_writes(&writes, self.id.as_str(), self.now);
        self.counters.writes_applied += pending.len() as u64;
        self.counters.write_batches += 1;
        for ((id, write), result) in pending.into_iter().zip(results) {
            let reply = match (write, result) {
                (OwnedWrite::Put { key, value }, Ok(_)) => {
                    self.batch.changed = true;
                    Ok(ApiResponse::Entry(Entry {
                        key,
                        value,
                        author: self.id.to_string(),
                        updated_at_ms: self.now,
                    }))
                }
                (OwnedWrite::Delete { .. }, Ok(true)) => {
                    self.batch.changed = true;
                    Ok(ApiResponse::Deleted)
                }
                (OwnedWrite::Delete { key }, Ok(false)) => Err(ApiError::NotFound(key)),
                (_, Err(error)) => {
                    tracing::warn!(%error, "a write failed");
                    Err(ApiError::Document(error))
                }
            };
            self.batch.replies.push((id, reply));
        }
    }

    /// Closes the batch: its writes as one change, one `Persist` of all that
    /// changed, one gossip message of its local changes, then its replies.
    fn end_batch(&mut self) {
        self.apply_pending();
        if std::mem::take(&mut self.batch.changed) {
            self.persist_changed();
        }
        self.publish_local_changes();
        for (id, response) in std::mem::take(&mut self.batch.replies) {
            self.outputs.push_back(Output::Reply { id, response });
        }
    }

    fn on_peer_connected(&mut self, peer: NodeId) {
        self.peers.insert(peer.clone(), Peer::default());
        let hello = Message::Hello(Hello {
            region: self.config.region.clone(),
            version: self.config.version.clone(),
        });
        self.send(&peer, &hello);
        self.send_digest(&peer);
        let mut fx = learning::Effects::default();
        self.learning.on_peer_connected(&peer, &mut fx);
        self.apply_learning(fx);
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
        if !matches!(message, Message::Changes(_)) {
            self.apply_pending();
        }
        match message {
            Message::Hello(hello) => {
                // Only connected peers are tracked: a message the transport
                // delivers after the disconnect must not resurrect the peer.
                if let Some(peer) = self.peers.get_mut(&from) {
                    peer.region = Some(hello.region);
                }
            }
            Message::Changes(changes) => self.on_changes(&from, changes),
            Message::Sync(sync) => self.on_sync(from, sync.doc, &sync.data),
            Message::Digest(digest) => self.on_digest(from, digest),
            Message::RootDigest(root) => self.on_root_digest(from, root),
            Message::Learn(message) => {
                if !self.peers.contains_key(&from) {
                    return;
                }
                let mut fx = learning::Effects::default();
                if let Err(error) = self.learning.on_message(&from, message, self.now, &mut fx) {
                    self.counters.rejected_messages += 1;
                    tracing::warn!(peer = %from, %error, "refused a learning message");
                }
                self.apply_learning(fx);
            }
        }
    }

    fn schedule_learning(&mut self) {
        if let Some(tick) = self.config.learning_tick_ms {
            self.outputs.push_back(Output::ScheduleTimer {
                timer: Timer::Learning,
                at: self.now + tick.max(1),
            });
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
