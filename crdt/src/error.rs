//! The crate's single error type.
//!
//! Every fallible operation of [`crate::KnowledgeBase`] returns [`Error`]. Bytes that come from a
//! peer or from disk are always validated before they touch the document, so a variant here
//! never means the document was left half-updated by a parse failure (see the notes on
//! [`Error::Automerge`] for the one exception).

use automerge::AutomergeError;

/// Everything that can go wrong in `mc-crdt`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Automerge refused an operation or a set of changes after they were parsed successfully,
    /// e.g. a change that reuses an `(actor, seq)` pair the document already holds with a
    /// different hash. Automerge may have dropped queued (not yet applied) changes of the
    /// offending actor, but the document's visible state and heads are unchanged.
    #[error("automerge rejected the operation: {0}")]
    Automerge(#[source] Box<AutomergeError>),

    /// The bytes are not a well-formed sequence of Automerge chunks (bad magic bytes, unknown
    /// chunk type, truncated header or body). `offset` is where the bad chunk starts.
    #[error("malformed automerge data at byte {offset}: {reason}")]
    MalformedChunk {
        /// Byte offset of the chunk that failed to parse.
        offset: usize,
        /// What was wrong with it.
        reason: String,
    },

    /// A chunk's header checksum does not match its contents (corruption in transit or on disk).
    #[error("checksum mismatch in chunk at byte {offset}")]
    ChecksumMismatch {
        /// Byte offset of the corrupted chunk.
        offset: usize,
    },

    /// A change chunk had a valid frame but its contents could not be decoded.
    #[error("invalid change at byte {offset}: {source}")]
    InvalidChange {
        /// Byte offset of the change chunk.
        offset: usize,
        /// Automerge's decoding error.
        #[source]
        source: Box<automerge::LoadChangeError>,
    },

    /// A document chunk (a full snapshot) had a valid frame but could not be loaded.
    #[error("invalid document chunk at byte {offset}: {source}")]
    InvalidDocument {
        /// Byte offset of the document chunk.
        offset: usize,
        /// Automerge's loading error.
        #[source]
        source: Box<AutomergeError>,
    },

    /// The chunk type is valid Automerge but deliberately not accepted here (the experimental
    /// "bundle" format); no component of Mission Control Mesh produces it.
    #[error("unsupported automerge chunk type {chunk_type} at byte {offset}")]
    UnsupportedChunk {
        /// Byte offset of the chunk.
        offset: usize,
        /// The raw chunk type byte.
        chunk_type: u8,
    },

    /// The persisted snapshot passed to [`crate::KnowledgeBase::load`] could not be loaded.
    #[error("cannot load snapshot: {0}")]
    Snapshot(#[source] Box<AutomergeError>),

    /// One of the persisted incremental chunks passed to [`crate::KnowledgeBase::load`] was
    /// rejected; `index` is its position in the iterator (0-based).
    #[error("cannot load incremental chunk #{index}: {source}")]
    Incremental {
        /// Position of the chunk in the sequence given to `load`.
        index: usize,
        /// Why it was rejected.
        #[source]
        source: Box<Error>,
    },

    /// The bytes given to [`crate::KnowledgeBase::receive_sync_message`] are not an Automerge
    /// sync message.
    #[error("cannot decode sync message: {0}")]
    SyncMessage(#[source] Box<automerge::sync::ReadMessageError>),

    /// The root `"entries"` object is missing or is not a map (a foreign or corrupted document).
    #[error("document layout is invalid: {0}")]
    Layout(String),

    /// The scalar stored under `key` is not an encoded entry (wrong Automerge type or invalid
    /// JSON); only a buggy or hostile peer can write such a value.
    #[error("malformed entry stored under key {key:?}: {reason}")]
    MalformedEntry {
        /// The key whose value is malformed.
        key: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A value could not be encoded as JSON (cannot happen for `serde_json::Value`, kept so that
    /// encoding never needs to panic).
    #[error("cannot encode entry as JSON: {0}")]
    Encode(#[source] serde_json::Error),
}

impl From<AutomergeError> for Error {
    fn from(err: AutomergeError) -> Self {
        Error::Automerge(Box::new(err))
    }
}
