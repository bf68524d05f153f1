//! What the core asks the driver to persist, and what it gets back at start.
//!
//! Every document is stored as one compacted snapshot plus a run of
//! incremental chunks appended after it, under its own keys:
//!
//! ```text
//! doc/<doc id>/snapshot             e.g. doc/knowledge/007/snapshot
//! doc/<doc id>/chunk/<seq, 20 digits>
//! learn/campaign/<campaign id>      saved campaign progress
//! ```
//!
//! Each chunk is a separate key, so an append never rewrites earlier data; a
//! compaction replaces the snapshot and removes the document's chunks in one
//! atomic batch. Stores written before the knowledge base was sharded hold
//! one document under `knowledge/snapshot` and `knowledge/chunk/…`; the core
//! moves its entries into the shards on start ([`Restored::legacy`]).

use std::collections::BTreeMap;

use mc_protocols::DocId;

/// The prefix of every document key.
pub const DOC_PREFIX: &str = "doc/";
/// The key of the single knowledge snapshot of stores from before sharding.
pub const LEGACY_SNAPSHOT_KEY: &str = "knowledge/snapshot";
/// The chunk prefix of stores from before sharding.
pub const LEGACY_CHUNK_PREFIX: &str = "knowledge/chunk/";

/// The prefix of saved campaign progress; the suffix is the campaign id (hex).
pub const CAMPAIGN_STATE_PREFIX: &str = "learn/campaign/";

/// The key of a document's compacted snapshot.
pub fn snapshot_key(doc: &DocId) -> String {
    format!("{DOC_PREFIX}{doc}/snapshot")
}

/// The prefix of a document's incremental chunks.
pub fn chunk_prefix(doc: &DocId) -> String {
    format!("{DOC_PREFIX}{doc}/chunk/")
}

/// The key of a document's `seq`-th incremental chunk (zero-padded, so that
/// key order is append order).
pub fn chunk_key(doc: &DocId, seq: u64) -> String {
    format!("{}{seq:020}", chunk_prefix(doc))
}

/// What a store key names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredKey {
    Snapshot(DocId),
    Chunk(DocId, u64),
    LegacySnapshot,
    LegacyChunk(u64),
    Campaign(String),
}

fn parse_key(key: &str) -> Option<StoredKey> {
    if let Some(rest) = key.strip_prefix(DOC_PREFIX) {
        if let Some(doc) = rest.strip_suffix("/snapshot") {
            return doc.parse().ok().map(StoredKey::Snapshot);
        }
        let (doc, seq) = rest.rsplit_once("/chunk/")?;
        return Some(StoredKey::Chunk(doc.parse().ok()?, seq.parse().ok()?));
    }
    if key == LEGACY_SNAPSHOT_KEY {
        return Some(StoredKey::LegacySnapshot);
    }
    if let Some(seq) = key.strip_prefix(LEGACY_CHUNK_PREFIX) {
        return seq.parse().ok().map(StoredKey::LegacyChunk);
    }
    key.strip_prefix(CAMPAIGN_STATE_PREFIX)
        .map(|id| StoredKey::Campaign(id.to_owned()))
}

/// One write in a [`Output::Persist`](super::Output::Persist) batch. A batch
/// is applied atomically and made durable before any later
/// [`Output::Reply`](super::Output::Reply) is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The bytes.
        value: Vec<u8>,
    },
    /// Remove every key that starts with this prefix.
    DeletePrefix(String),
}

/// One document as the store held it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredDoc {
    /// The last compacted snapshot, if any.
    pub snapshot: Option<Vec<u8>>,
    /// Incremental chunks after it, in sequence order, with their numbers.
    pub chunks: Vec<(u64, Vec<u8>)>,
}

impl RestoredDoc {
    /// The sequence number the next chunk gets.
    pub fn next_seq(&self) -> u64 {
        self.chunks.last().map_or(0, |(seq, _)| seq + 1)
    }

    /// Whether the store held nothing of this document.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.chunks.is_empty()
    }
}

/// Everything the store held at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Every document, by id.
    pub docs: BTreeMap<DocId, RestoredDoc>,
    /// The single knowledge document of a store from before sharding.
    pub legacy: RestoredDoc,
    /// Saved progress of federated campaigns: (campaign id in hex, bytes).
    pub campaigns: Vec<(String, Vec<u8>)>,
}

impl Restored {
    /// Rebuilds `Restored` from the store's key/value pairs (any order).
    /// Keys it does not know are ignored.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let mut restored = Restored::default();
        for (key, value) in pairs {
            match parse_key(&key) {
                Some(StoredKey::Snapshot(doc)) => {
                    restored.docs.entry(doc).or_default().snapshot = Some(value);
                }
                Some(StoredKey::Chunk(doc, seq)) => {
                    restored
                        .docs
                        .entry(doc)
                        .or_default()
                        .chunks
                        .push((seq, value));
                }
                Some(StoredKey::LegacySnapshot) => restored.legacy.snapshot = Some(value),
                Some(StoredKey::LegacyChunk(seq)) => restored.legacy.chunks.push((seq, value)),
                Some(StoredKey::Campaign(id)) => restored.campaigns.push((id, value)),
                None => {}
            }
        }
        for doc in restored.docs.values_mut() {
            doc.chunks.sort_by_key(|(seq, _)| *seq);
        }
        restored.legacy.chunks.sort_by_key(|(seq, _)| *seq);
        restored.campaigns.sort();
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_sort_in_sequence_order_and_parse_back() {
        let doc = DocId::Knowledge { shard: 7 };
        assert!(chunk_key(&doc, 9) < chunk_key(&doc, 10));
        assert_eq!(
            chunk_key(&doc, 3),
            "doc/knowledge/007/chunk/00000000000000000003"
        );
        assert_eq!(
            parse_key(&chunk_key(&doc, 1234)),
            Some(StoredKey::Chunk(doc, 1234))
        );
        assert_eq!(
            parse_key(&snapshot_key(&doc)),
            Some(StoredKey::Snapshot(doc))
        );
        assert_eq!(parse_key("doc/nonsense/snapshot"), None);
        assert_eq!(parse_key("unrelated"), None);
    }

    #[test]
    fn restored_groups_chunks_by_document_in_order() {
        let (a, b) = (DocId::Knowledge { shard: 0 }, DocId::Knowledge { shard: 1 });
        let r = Restored::from_pairs(vec![
            (chunk_key(&a, 2), vec![2]),
            (snapshot_key(&a), vec![0]),
            (chunk_key(&a, 1), vec![1]),
            (chunk_key(&b, 0), vec![5]),
            (format!("{LEGACY_CHUNK_PREFIX}{:020}", 4), vec![4]),
            (LEGACY_SNAPSHOT_KEY.to_string(), vec![3]),
            (format!("{CAMPAIGN_STATE_PREFIX}ab"), vec![9]),
            ("unrelated".to_string(), vec![9]),
        ]);
        assert_eq!(r.docs[&a].snapshot, Some(vec![0]));
        assert_eq!(r.docs[&a].chunks, vec![(1, vec![1]), (2, vec![2])]);
        assert_eq!(r.docs[&a].next_seq(), 3);
        assert_eq!(r.docs[&b].next_seq(), 1);
        assert_eq!(r.legacy.snapshot, Some(vec![3]));
        assert_eq!(r.legacy.chunks, vec![(4, vec![4])]);
        assert_eq!(r.campaigns, vec![("ab".to_string(), vec![9])]);
        assert!(RestoredDoc::default().is_empty());
    }
}
