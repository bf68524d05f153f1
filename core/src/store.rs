//! What the core asks the driver to persist, and what it gets back at start.
//!
//! The knowledge document is stored as one compacted snapshot plus a run of
//! incremental chunks appended after it. Each chunk is a separate key, so an
//! append never rewrites earlier data; a compaction replaces the snapshot and
//! removes every chunk in one atomic batch.

/// The key of the compacted knowledge snapshot.
pub const KNOWLEDGE_SNAPSHOT_KEY: &str = "knowledge/snapshot";
/// The prefix of incremental knowledge chunks; the suffix is a zero-padded
/// sequence number so that key order is append order.
pub const KNOWLEDGE_CHUNK_PREFIX: &str = "knowledge/chunk/";

/// The prefix of saved campaign progress; the suffix is the campaign id (hex).
pub const CAMPAIGN_STATE_PREFIX: &str = "learn/campaign/";

/// The key of the `seq`-th incremental chunk.
pub fn chunk_key(seq: u64) -> String {
    format!("{KNOWLEDGE_CHUNK_PREFIX}{seq:020}")
}

/// The sequence number of a chunk key, if it is one.
pub fn chunk_seq(key: &str) -> Option<u64> {
    key.strip_prefix(KNOWLEDGE_CHUNK_PREFIX)?.parse().ok()
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

/// The knowledge document as the store held it at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The last compacted snapshot, if any.
    pub snapshot: Option<Vec<u8>>,
    /// Incremental chunks after it, in sequence order, with their numbers.
    pub chunks: Vec<(u64, Vec<u8>)>,
    /// Saved progress of federated campaigns: (campaign id in hex, bytes).
    pub campaigns: Vec<(String, Vec<u8>)>,
}

impl Restored {
    /// Rebuilds `Restored` from the store's key/value pairs (any order).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        let mut restored = Restored::default();
        for (key, value) in pairs {
            if key == KNOWLEDGE_SNAPSHOT_KEY {
                restored.snapshot = Some(value);
            } else if let Some(seq) = chunk_seq(&key) {
                restored.chunks.push((seq, value));
            } else if let Some(id) = key.strip_prefix(CAMPAIGN_STATE_PREFIX) {
                restored.campaigns.push((id.to_string(), value));
            }
        }
        restored.chunks.sort_by_key(|(seq, _)| *seq);
        restored.campaigns.sort();
        restored
    }

    /// The sequence number the next chunk gets.
    pub fn next_seq(&self) -> u64 {
        self.chunks.last().map_or(0, |(seq, _)| seq + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_sort_in_sequence_order() {
        assert!(chunk_key(9) < chunk_key(10));
        assert_eq!(chunk_seq(&chunk_key(1234)), Some(1234));
        assert_eq!(chunk_seq(KNOWLEDGE_SNAPSHOT_KEY), None);
    }

    #[test]
    fn restored_orders_chunks_and_finds_the_next_sequence() {
        let r = Restored::from_pairs(vec![
            (chunk_key(2), vec![2]),
            (KNOWLEDGE_SNAPSHOT_KEY.to_string(), vec![0]),
            (chunk_key(1), vec![1]),
            ("unrelated".to_string(), vec![9]),
        ]);
        assert_eq!(r.snapshot, Some(vec![0]));
        assert_eq!(r.chunks, vec![(1, vec![1]), (2, vec![2])]);
        assert_eq!(r.next_seq(), 3);
        assert_eq!(Restored::default().next_seq(), 0);
    }
}
