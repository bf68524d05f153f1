//! The messages nodes exchange.

use serde::{Deserialize, Serialize};

/// Which replicated document a message is about.
///
/// An open family: the knowledge base is sharded over
/// [`KNOWLEDGE_SHARDS`] documents, and later capabilities (one document per
/// thread, per telemetry epoch, per catalog) add variants. Adding a variant
/// at the end keeps old encodings valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DocId {
    /// One shard of the knowledge base every region sees; a key lives in
    /// shard [`knowledge_shard`]`(key)`.
    Knowledge {
        /// The shard, below [`KNOWLEDGE_SHARDS`].
        shard: u16,
    },
}

/// How many documents the knowledge base is sharded over. Part of the data
/// format: every node must use the same number.
///
/// Many small documents rather than a few large ones: Automerge applies a
/// batch of received changes by walking the whole map it touches, so the
/// cost of a burst is the size of the shards it lands in.
pub const KNOWLEDGE_SHARDS: u16 = 256;

/// The knowledge shard that holds `key`: FNV-1a (64 bit) of the key's bytes
/// modulo [`KNOWLEDGE_SHARDS`]. Stable across nodes, versions and platforms.
pub fn knowledge_shard(key: &str) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(KNOWLEDGE_SHARDS)) as u16
}

impl DocId {
    /// Every knowledge shard, in order.
    pub fn knowledge_shards() -> impl Iterator<Item = DocId> {
        (0..KNOWLEDGE_SHARDS).map(|shard| DocId::Knowledge { shard })
    }

    /// The knowledge shard of `key`.
    pub fn knowledge_of(key: &str) -> DocId {
        DocId::Knowledge {
            shard: knowledge_shard(key),
        }
    }
}

/// `knowledge/007`: the form used in store keys and the HTTP API.
impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocId::Knowledge { shard } => write!(f, "knowledge/{shard:03}"),
        }
    }
}

/// Why a text is not a [`DocId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a document id: {0:?} (expected e.g. knowledge/007)")]
pub struct InvalidDocId(pub String);

impl std::str::FromStr for DocId {
    type Err = InvalidDocId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidDocId(text.to_owned());
        let shard = text.strip_prefix("knowledge/").ok_or_else(bad)?;
        if shard.is_empty() || !shard.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match shard.parse::<u16>() {
            Ok(shard) if shard < KNOWLEDGE_SHARDS => Ok(DocId::Knowledge { shard }),
            _ => Err(bad()),
        }
    }
}

/// Everything a node can say to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message on a new connection: who I am, in words.
    Hello(Hello),
    /// Automerge change bytes of local edits, pushed by gossip: one entry
    /// per document a batch of writes touched.
    Changes(Vec<Changes>),
    /// One step of Automerge's sync protocol, sent point to point.
    Sync(SyncMessage),
    /// Federated learning, sent point to point: one piece of a signed weight
    /// update, or evidence of equivocation. The payload is `mc-learn-core`'s
    /// own versioned encoding, checked by the receiver's round collector.
    Learn(LearnMessage),
    /// Anti-entropy, point to point: a digest of this node's heads for every
    /// document it holds, the answer to a [`Message::RootDigest`] that did
    /// not match. The receiver starts an Automerge sync exchange for each
    /// document whose digest differs from its own.
    Digest(Vec<DocDigest>),
    /// Anti-entropy, point to point: one number that digests every
    /// document's heads. A peer whose own root digest differs answers with
    /// its [`Message::Digest`], so an idle round costs one small message per
    /// peer however many documents there are.
    RootDigest(u64),
}

/// One document's heads, digested (see [`Message::Digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocDigest {
    /// The document.
    pub doc: DocId,
    /// XOR of the first 8 bytes (little endian) of each head's hash: equal
    /// heads give equal digests, whatever their order.
    pub heads: u64,
}

/// Introduces a node to a peer it just connected to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The region the node serves, e.g. `us-east`.
    pub region: String,
    /// The node's software version.
    pub version: String,
}

/// Raw Automerge changes (as `Change::raw_bytes`), broadcast when made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// The document the changes belong to.
    pub doc: DocId,
    /// One or more concatenated raw changes.
    #[serde(with = "bytes_as_slice")]
    pub bytes: Vec<u8>,
}

/// Federated-learning payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnMessage {
    /// One chunk of an encoded signed update for `round` of `campaign`.
    UpdateChunk {
        /// The campaign's id.
        campaign: [u8; 16],
        /// The round the update belongs to.
        round: u32,
        /// An encoded `mc_learn_core::Chunk`.
        #[serde(with = "bytes_as_slice")]
        chunk: Vec<u8>,
    },
    /// Two conflicting signed headers by one author for one round.
    Evidence {
        /// The campaign's id.
        campaign: [u8; 16],
        /// The round.
        round: u32,
        /// An encoded `mc_learn_core::round::Evidence`.
        #[serde(with = "bytes_as_slice")]
        evidence: Vec<u8>,
    },
    /// A participant that fell behind, or whose model diverged, asks
    /// another for the campaign's state at the start of `round` (catch-up).
    StateRequest {
        /// The campaign's id.
        campaign: [u8; 16],
        /// The round the asker saw a majority of members sign updates for.
        round: u32,
    },
    /// One chunk of a participant's encoded campaign state, the answer to a
    /// [`LearnMessage::StateRequest`].
    StateChunk {
        /// The campaign's id.
        campaign: [u8; 16],
        /// The round the state is at the start of.
        round: u32,
        /// An encoded `mc_learn_core::Chunk` of the state.
        #[serde(with = "bytes_as_slice")]
        chunk: Vec<u8>,
    },
}

/// An encoded Automerge sync message for one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMessage {
    /// The document being synchronised.
    pub doc: DocId,
    /// `automerge::sync::Message::encode()` output.
    #[serde(with = "bytes_as_slice")]
    pub data: Vec<u8>,
}

/// Serialises a byte vector as one length-prefixed slice rather than as a
/// sequence of integers (postcard writes both compactly, but other serde
/// formats do not, and this keeps the intent explicit).
mod bytes_as_slice {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_ids_print_and_parse() {
        for id in DocId::knowledge_shards() {
            assert_eq!(id.to_string().parse::<DocId>(), Ok(id));
        }
        assert_eq!(DocId::Knowledge { shard: 7 }.to_string(), "knowledge/007");
        for bad in [
            "",
            "knowledge",
            "knowledge/",
            "knowledge/256",
            "knowledge/-1",
            "knowledge/+1",
            "threads/1",
        ] {
            assert!(bad.parse::<DocId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_spread_over_every_shard_and_stay_put() {
        // Fixed values: the shard of a key is part of the data format.
        assert_eq!(
            knowledge_shard(""),
            (0xcbf2_9ce4_8422_2325_u64 % 256) as u16
        );
        assert_eq!(
            knowledge_shard("campaigns/x"),
            knowledge_shard("campaigns/x")
        );
        let mut counts = [0usize; KNOWLEDGE_SHARDS as usize];
        for i in 0..25_600 {
            counts[usize::from(knowledge_shard(&format!("load/{i:06}")))] += 1;
        }
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
    }
}
