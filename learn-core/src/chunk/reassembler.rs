//! [`Reassembler`]: whole updates from chunks, within [`Limits`].

use std::collections::BTreeMap;

use super::{Chunk, ChunkError, finish};
use crate::digest::Digest;

/// Bounds on what a [`Reassembler`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest update accepted (announced `total_len`).
    pub max_update_bytes: u64,
    /// Most partial updates held per sender.
    pub max_pending_per_sender: usize,
    /// Most bytes reserved per sender across its partial updates.
    pub max_bytes_per_sender: u64,
}

impl Default for Limits {
    /// 64 MiB updates, 2 pending per sender, 128 MiB per sender.
    fn default() -> Self {
        Self {
            max_update_bytes: 64 << 20,
            max_pending_per_sender: 2,
            max_bytes_per_sender: 128 << 20,
        }
    }
}

/// Collects chunks from many senders and yields whole updates.
///
/// Memory is bounded by `senders × max_bytes_per_sender`. The caller drops a
/// departed sender's partial updates with [`forget`](Self::forget) and
/// everything at the end of a round with [`clear`](Self::clear).
#[derive(Debug)]
pub struct Reassembler<K> {
    limits: Limits,
    pending: BTreeMap<(K, Digest), Partial>,
    reserved: BTreeMap<K, (usize, u64)>,
}

struct Partial {
    total: u32,
    total_len: u64,
    received: u64,
    chunks: BTreeMap<u32, Vec<u8>>,
}

impl std::fmt::Debug for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partial")
            .field("total", &self.total)
            .field("total_len", &self.total_len)
            .field("received", &self.received)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl<K: Ord + Clone> Reassembler<K> {
    /// An empty reassembler.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: BTreeMap::new(),
            reserved: BTreeMap::new(),
        }
    }

    /// Adds a chunk received from `from`. Returns the whole update's bytes
    /// when this chunk completes it, `None` while chunks are missing (or when
    /// the chunk repeats one already held).
    pub fn insert(&mut self, from: K, chunk: Chunk) -> Result<Option<Vec<u8>>, ChunkError> {
        if chunk.total == 0 || chunk.index >= chunk.total {
            return Err(ChunkError::Inconsistent("index out of range"));
        }
        if chunk.total_len > self.limits.max_update_bytes {
            return Err(ChunkError::TooLarge {
                len: chunk.total_len,
                max: self.limits.max_update_bytes,
            });
        }
        if u64::from(chunk.total) > chunk.total_len.max(1) {
            return Err(ChunkError::Inconsistent("more chunks than bytes"));
        }
        if chunk.data.is_empty() && chunk.total_len > 0 {
            return Err(ChunkError::Inconsistent("empty chunk"));
        }
        if chunk.data.len() as u64 > chunk.total_len {
            return Err(ChunkError::Inconsistent("more bytes than announced"));
        }
        if chunk.total == 1 {
            return finish(chunk.update_id, chunk.total_len, chunk.data).map(Some);
        }

        let key = (from, chunk.update_id);
        if !self.pending.contains_key(&key) {
            let (count, bytes) = self.reserved.get(&key.0).copied().unwrap_or((0, 0));
            if count >= self.limits.max_pending_per_sender
                || bytes + chunk.total_len > self.limits.max_bytes_per_sender
            {
                return Err(ChunkError::OverBudget {
                    pending: count,
                    bytes,
                });
            }
            self.reserved
                .insert(key.0.clone(), (count + 1, bytes + chunk.total_len));
            self.pending.insert(
                key.clone(),
                Partial {
                    total: chunk.total,
                    total_len: chunk.total_len,
                    received: 0,
                    chunks: BTreeMap::new(),
                },
            );
        }
        let partial = self.pending.get_mut(&key).expect("inserted above");
        if partial.total != chunk.total || partial.total_len != chunk.total_len {
            return Err(ChunkError::Inconsistent(
                "totals differ from earlier chunks",
            ));
        }
        if let Some(held) = partial.chunks.get(&chunk.index) {
            return if *held == chunk.data {
                Ok(None)
            } else {
                Err(ChunkError::Inconsistent(
                    "other data at an index already held",
                ))
            };
        }
        if partial.received + chunk.data.len() as u64 > partial.total_len {
            return Err(ChunkError::Inconsistent("more bytes than announced"));
        }
        partial.received += chunk.data.len() as u64;
        partial.chunks.insert(chunk.index, chunk.data);
        if partial.chunks.len() < partial.total as usize {
            return Ok(None);
        }
        let partial = self.remove(&key).expect("present");
        let mut bytes = Vec::with_capacity(partial.received as usize);
        for data in partial.chunks.into_values() {
            bytes.extend_from_slice(&data);
        }
        finish(key.1, partial.total_len, bytes).map(Some)
    }

    /// Drops every partial update from `sender`.
    pub fn forget(&mut self, sender: &K) {
        let keys: Vec<(K, Digest)> = self
            .pending
            .keys()
            .filter(|(k, _)| k == sender)
            .cloned()
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    /// Drops every partial update.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.reserved.clear();
    }

    /// Partial updates held.
    pub fn pending_updates(&self) -> usize {
        self.pending.len()
    }

    /// Bytes reserved for partial updates, over all senders.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved.values().map(|&(_, b)| b).sum()
    }

    fn remove(&mut self, key: &(K, Digest)) -> Option<Partial> {
        let partial = self.pending.remove(key)?;
        if let Some((count, bytes)) = self.reserved.get_mut(&key.0) {
            *count -= 1;
            *bytes -= partial.total_len;
            if *count == 0 {
                self.reserved.remove(&key.0);
            }
        }
        Some(partial)
    }
}
