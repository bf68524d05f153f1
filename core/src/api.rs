//! Requests the HTTP API hands to the core, and what the core answers.

use mc_crdt::Entry;
use serde::Serialize;

use super::learning::{CampaignRequest, CampaignState, CampaignView, LearnError};

/// Identifies one API request so that its [`Output::Reply`](super::Output::Reply)
/// can be matched to it by the driver.
pub type RequestId = u64;

/// The longest knowledge key the API accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// A request from the API, as the core sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiRequest {
    /// Store `value` under `key`, authored by this node.
    Put {
        /// The entry's key.
        key: String,
        /// Any JSON value, kept as its exact text.
        value: mc_crdt::Json,
    },
    /// Read one entry.
    Get {
        /// The entry's key.
        key: String,
    },
    /// Remove one entry.
    Delete {
        /// The entry's key.
        key: String,
    },
    /// Every entry whose key starts with `prefix`, sorted by key.
    List {
        /// The prefix; empty lists everything.
        prefix: String,
    },
    /// The node's status report.
    Status,
    /// Declare a federated-learning campaign.
    CreateCampaign(Box<CampaignRequest>),
    /// One campaign, by hex id.
    GetCampaign {
        /// The campaign's id (hex).
        id: String,
    },
    /// Every campaign this node knows.
    ListCampaigns,
    /// Every replicated document: id, size, heads.
    ListDocuments,
    /// One document's whole Automerge bytes.
    ExportDocument {
        /// The document's id, e.g. `knowledge/007`.
        id: String,
    },
    /// A signed update handed over by the API instead of a peer; it is
    /// checked exactly like one from the network.
    SubmitUpdate {
        /// The campaign the caller addressed (`/v1/campaigns/{id}/updates`);
        /// an update for another one is refused. `None` for any campaign.
        campaign: Option<String>,
        /// The update's wire encoding.
        bytes: Vec<u8>,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiResponse {
    /// The entry that was read or written.
    Entry(Entry),
    /// The entries that matched a listing.
    Entries(Vec<Entry>),
    /// The entry was deleted.
    Deleted,
    /// The status report.
    Status(Box<Status>),
    /// One campaign.
    Campaign(Box<CampaignView>),
    /// Campaigns.
    Campaigns(Vec<CampaignView>),
    /// A submitted update was accepted into its round.
    UpdateAccepted,
    /// The documents this node holds.
    Documents(Vec<DocumentInfo>),
    /// A document's Automerge bytes (`Automerge::save`).
    DocumentBytes(Vec<u8>),
}

/// One replicated document, as `GET /v1/documents` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentInfo {
    /// The id, e.g. `knowledge/007`.
    pub id: String,
    /// Keys in its entries map.
    pub entries: usize,
    /// Changes in its history.
    pub changes: usize,
    /// Its heads, lowercase hex, sorted.
    pub heads: Vec<String>,
    /// Bytes its persisted form takes (snapshot plus incremental chunks).
    pub saved_bytes: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No entry has this key.
    #[error("no entry with key {0:?}")]
    NotFound(String),
    /// The key is empty, too long or contains control characters.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// No document has this id.
    #[error("no document {0:?} (see GET /v1/documents)")]
    UnknownDocument(String),
    /// The document rejected the operation or holds an unreadable entry.
    #[error("knowledge document error: {0}")]
    Document(String),
    /// A federated-learning request failed.
    #[error(transparent)]
    Learn(#[from] LearnError),
}

/// The node's view of itself, served on `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// This node's identity (its libp2p peer id in the real node).
    pub peer_id: String,
    /// The region this node serves.
    pub region: String,
    /// Software version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_s: f64,
    /// Addresses peers can dial, as the transport reported them.
    pub listen_addrs: Vec<String>,
    /// Whether local changes are pushed by gossip (anti-entropy runs regardless).
    pub gossip_enabled: bool,
    /// Connected peers, sorted by id.
    pub peers: Vec<PeerStatus>,
    /// The knowledge document.
    pub knowledge: KnowledgeStatus,
    /// Counters since start.
    pub counters: Counters,
    /// Federated learning.
    pub learning: LearningStatus,
}

/// Federated learning, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LearningStatus {
    /// Whether this node takes part in campaigns.
    pub enabled: bool,
    /// The ed25519 key this node signs updates with (hex).
    pub public_key: String,
    /// Campaigns it knows.
    pub campaigns: Vec<CampaignSummary>,
}

/// One campaign's progress line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignSummary {
    /// Hex id.
    pub id: String,
    /// The model's name.
    pub model: String,
    /// This node's state for it.
    pub state: CampaignState,
    /// The round in progress.
    pub round: u32,
    /// Rounds in total (moments round included).
    pub total_rounds: u32,
}

/// One connected peer, as seen from this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The peer's identity.
    pub peer_id: String,
    /// Its region, once its `Hello` arrived.
    pub region: Option<String>,
    /// When (unix ms) a sync message from this peer was last applied.
    pub last_sync_ms: Option<u64>,
    /// Whether the peer's last known heads equal ours.
    pub in_sync: bool,
}

/// The knowledge document's shape and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KnowledgeStatus {
    /// Number of live entries.
    pub entries: usize,
    /// Current heads (hex change hashes, sorted).
    pub heads: Vec<String>,
    /// Number of changes in the history.
    pub changes: usize,
    /// Bytes the persisted form takes (last snapshot plus increments since).
    pub doc_bytes: u64,
}

/// Event counters, for status and for the simulator's reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Gossip messages published.
    pub gossip_published: u64,
    /// Gossip messages received and applied.
    pub gossip_received: u64,
    /// Local changes too large for gossip, sent by sync instead.
    pub gossip_oversize_fallbacks: u64,
    /// Broadcasts the transport could not deliver, repaired by sync.
    pub broadcast_failures: u64,
    /// Sync messages sent.
    pub sync_sent: u64,
    /// Sync messages received.
    pub sync_received: u64,
    /// Messages from peers that could not be decoded or applied.
    pub rejected_messages: u64,
    /// Full compactions of the persisted document.
    pub compactions: u64,
    /// Local writes (puts and deletes) applied.
    pub writes_applied: u64,
    /// Batches those writes were applied in: each batch is one Automerge
    /// change, one persist and one gossip message, so writes / batches is
    /// the mean group-commit size.
    pub write_batches: u64,
}
