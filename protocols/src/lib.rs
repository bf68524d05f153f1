//! Wire messages of Mission Control Mesh.
//!
//! Every byte that one `mc-node` sends another — over gossip or over a
//! point-to-point stream — is a [`Message`] wrapped in a versioned envelope
//! and encoded with [postcard](https://docs.rs/postcard), a compact binary
//! serde format. This crate is pure logic: no I/O, no clock, no randomness,
//! and it depends on neither tokio nor libp2p, so the real node and the
//! simulator share it unchanged.
//!
//! # Envelope
//!
//! ```text
//! +---------+-----------------------------+
//! | version | postcard(Message)           |
//! |  1 byte |  up to the caller's maximum |
//! +---------+-----------------------------+
//! ```
//!
//! Decoding enforces a maximum size *before* it looks at the body, rejects an
//! unknown version, and rejects trailing bytes; arbitrary bytes from a peer
//! give an [`Error`], never a panic (see the property tests).
//!
//! # Layout
//!
//! - [`message`]: the message types ([`Message`], [`Hello`], [`Changes`], [`SyncMessage`],
//!   [`DocDigest`]) and document ids ([`DocId`], the knowledge shards).
//! - [`codec`]: [`encode`] / [`decode`], the size limits and the [`Error`] enum.
//! - [`node_id`]: [`NodeId`], how the core names a peer without knowing libp2p.

pub mod codec;
pub mod message;
pub mod node_id;

pub use codec::{
    Error, MAX_GOSSIP_MESSAGE_BYTES, MAX_MESSAGE_BYTES, WIRE_VERSION, decode, encode, encoded_len,
};
pub use message::{
    Changes, DocDigest, DocId, Hello, InvalidDocId, KNOWLEDGE_SHARDS, LearnMessage, Message,
    SyncMessage, knowledge_shard,
};
pub use node_id::NodeId;
