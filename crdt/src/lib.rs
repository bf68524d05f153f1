//! # mc-crdt — the shared knowledge base of Mission Control Mesh
//!
//! Every region node holds a replica of one knowledge base: a map from string keys to
//! [`Entry`]s (a JSON value, its author and the writer's timestamp). Replicas are edited
//! independently and converge by exchanging Automerge changes, so this crate is the
//! *conflict-free* core of the mesh: it owns the Automerge document and exposes it through
//! [`KnowledgeBase`], a typed API the node calls.
//!
//! The crate is pure logic: no clock, no randomness, no I/O. Time (`now_ms`) and the replica's
//! [`ActorId`] are inputs; bytes for the network and the disk are outputs and inputs.
//!
//! ## What goes in and out
//!
//! * **Local edits**: [`KnowledgeBase::put`], [`KnowledgeBase::delete`]; each is one Automerge
//!   change. [`KnowledgeBase::apply_writes`] makes a batch of them one change. Reads: [`KnowledgeBase::get`], [`KnowledgeBase::list`].
//! * **Gossip**: after edits, [`KnowledgeBase::take_local_changes`] gives the bytes of every local
//!   change not yet handed out, to broadcast; peers feed them to [`KnowledgeBase::apply_changes`] (order does not matter —
//!   changes with missing dependencies are queued until the dependencies arrive).
//! * **Anti-entropy**: the Automerge sync protocol via [`KnowledgeBase::generate_sync_message`]
//!   and [`KnowledgeBase::receive_sync_message`], with one [`SyncSession`] per peer. A periodic
//!   round can open with [`KnowledgeBase::generate_sync_probe`] (heads only) when gossip
//!   normally delivers changes, so that rounds between replicas that agree carry no changes.
//! * **Persistence**: append [`KnowledgeBase::save_incremental`] to the store; when
//!   [`KnowledgeBase::needs_compaction`], replace the store with [`KnowledgeBase::compact`];
//!   rebuild on start with [`KnowledgeBase::load`].
//!
//! All bytes from peers or disk are decoded strictly *before* they touch the document: garbage,
//! truncation and checksum errors become an [`Error`] and leave the document unchanged
//! (Automerge's own `load_incremental` would silently ignore undecodable trailing data).
//!
//! ## Document layout
//!
//! ```text
//! ROOT
//! └── "entries": Map            (created by the shared genesis change)
//!     ├── "<key>": Str  '{"v": <json value>, "a": "<author>", "t": <updated_at_ms>}'
//!     └── ...
//! ```
//!
//! Each key holds exactly **one scalar** containing the whole entry, so a concurrent `put` of
//! the same key on two replicas resolves (by Automerge's deterministic winner rule) to one whole
//! entry, never a mix of fields from both writes. A value that is not such a string — only a
//! buggy peer can write one — makes [`KnowledgeBase::get`] fail with
//! [`Error::MalformedEntry`], and [`KnowledgeBase::list`] skips it.
//!
//! The `"entries"` map is created by a *genesis change* that every replica generates
//! identically (fixed actor, time 0), so all replicas share the same map object instead of
//! creating competing ones.
//!
//! ## Actor ids
//!
//! Use a fresh [`ActorId`] for every run of a node (e.g. random bytes drawn by the caller), not
//! just one per node: if a node restarts with the same actor after losing its latest unsaved
//! changes that were already gossiped, its next change reuses a sequence number with a different
//! hash and every peer that holds the old change rejects it ([`Error::Automerge`]).
//!
//! ## Modules
//!
//! * `knowledge_base` — [`KnowledgeBase`], [`DocStats`], reads, writes, gossip application.
//! * `persistence` — load / incremental save / compaction policy.
//! * `sync` — [`SyncSession`] and the sync-protocol methods.
//! * `entry` — [`Entry`] and its stored JSON form.
//! * `json` — [`Json`], a JSON value kept as its exact text, so that what a client writes is
//!   what every replica reads back (every digit of every number).
//! * `chunks` — strict decoding of Automerge binary chunks.
//! * `error` — [`Error`].

mod chunks;
mod entry;
mod error;
mod json;
mod knowledge_base;
mod persistence;
mod sync;

pub use automerge::ActorId;
pub use entry::Entry;
pub use error::Error;
pub use json::{InvalidJson, Json};
pub use knowledge_base::{
    DEFAULT_MAX_INCREMENTAL_BYTES, DEFAULT_MAX_INCREMENTALS, DecodedChanges, DocStats,
    KnowledgeBase, Write,
};
pub use sync::SyncSession;
