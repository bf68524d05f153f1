//! The messages nodes exchange.

use serde::{Deserialize, Serialize};

/// Which replicated document a message is about.
///
/// Today there is one, the shared knowledge base; later capabilities
/// (thread replicas, campaigns) add variants here. Adding a variant at the end
/// keeps old encodings valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DocId {
    /// The knowledge base every region sees.
    Knowledge,
}

/// Everything a node can say to another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First message on a new connection: who I am, in words.
    Hello(Hello),
    /// Automerge change bytes of a local edit, pushed by gossip.
    Changes(Changes),
    /// One step of Automerge's sync protocol, sent point to point.
    Sync(SyncMessage),
    /// Federated learning, sent point to point: one piece of a signed weight
    /// update, or evidence of equivocation. The payload is `mc-learn-core`'s
    /// own versioned encoding, checked by the receiver's round collector.
    Learn(LearnMessage),
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
