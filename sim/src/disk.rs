//! The disk model: what a node's store holds, and what a crash takes away.
//!
//! The core's `Persist` batches go to an in-memory store as *unflushed*
//! writes. Each batch's flush completes after a disk latency drawn from
//! `[flush_min_ms, flush_max_ms]`, in order (a flush never overtakes an
//! earlier one). A `Reply` the core emits after a batch is held until that
//! batch is durable — the rule the real driver keeps with sled — so an
//! acknowledged write is always on disk. A crash throws away every unflushed
//! batch and every held reply; the restarted core gets only durable data.

use std::collections::{BTreeMap, VecDeque};

use mc_core::{ApiError, ApiResponse, RequestId, Restored, StoreOp};
use serde::{Deserialize, Serialize};

use crate::queue::Micros;

/// Disk parameters (`[disk]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Shortest flush.
    pub flush_min_ms: f64,
    /// Longest flush.
    pub flush_max_ms: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            flush_min_ms: 1.0,
            flush_max_ms: 5.0,
        }
    }
}

/// A reply the core produced.
pub type Reply = (RequestId, Result<ApiResponse, ApiError>);

/// What a crash destroyed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Unflushed batches.
    pub batches: usize,
    /// Replies never sent.
    pub replies: usize,
}

/// One node's store.
#[derive(Debug, Default)]
pub struct Disk {
    durable: BTreeMap<String, Vec<u8>>,
    unflushed: VecDeque<(u64, Vec<StoreOp>)>,
    held: VecDeque<(u64, Reply)>,
    next_batch: u64,
    flushed: u64,
    last_flush_done: Micros,
}

impl Disk {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a batch; returns its number and when its flush completes,
    /// given a drawn `latency`.
    pub fn write(&mut self, ops: Vec<StoreOp>, now: Micros, latency: Micros) -> (u64, Micros) {
        self.next_batch += 1;
        self.unflushed.push_back((self.next_batch, ops));
        let done = now.max(self.last_flush_done) + latency;
        self.last_flush_done = done;
        (self.next_batch, done)
    }

    /// A reply: returned at once if every batch so far is durable, else held.
    pub fn reply(&mut self, reply: Reply) -> Option<Reply> {
        if self.flushed >= self.next_batch {
            Some(reply)
        } else {
            self.held.push_back((self.next_batch, reply));
            None
        }
    }

    /// Batch `batch`'s flush completed: applies it (and any earlier) and
    /// returns the replies that may now be sent.
    pub fn flushed(&mut self, batch: u64) -> Vec<Reply> {
        while let Some((n, _)) = self.unflushed.front() {
            if *n > batch {
                break;
            }
            if let Some((_, ops)) = self.unflushed.pop_front() {
                apply(&mut self.durable, ops);
            }
        }
        self.flushed = self.flushed.max(batch);
        let mut out = Vec::new();
        while self.held.front().is_some_and(|(n, _)| *n <= self.flushed) {
            if let Some((_, reply)) = self.held.pop_front() {
                out.push(reply);
            }
        }
        out
    }

    /// The process died: unflushed writes and held replies are gone.
    pub fn crash(&mut self) -> Loss {
        let loss = Loss {
            batches: self.unflushed.len(),
            replies: self.held.len(),
        };
        self.unflushed.clear();
        self.held.clear();
        // Batch numbers restart in step with the durable state.
        self.next_batch = self.flushed;
        loss
    }

    /// What a restarting core finds.
    pub fn restored(&self) -> Restored {
        Restored::from_pairs(self.durable.iter().map(|(k, v)| (k.clone(), v.clone())))
    }

    /// Bytes on disk.
    pub fn durable_bytes(&self) -> u64 {
        self.durable.values().map(|v| v.len() as u64).sum()
    }
}

fn apply(store: &mut BTreeMap<String, Vec<u8>>, ops: Vec<StoreOp>) {
    for op in ops {
        match op {
            StoreOp::Put { key, value } => {
                store.insert(key, value);
            }
            StoreOp::DeletePrefix(prefix) => {
                let doomed: Vec<String> = store
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in doomed {
                    store.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mc_core::ApiResponse;

    fn put(key: &str) -> Vec<StoreOp> {
        vec![StoreOp::Put {
            key: key.into(),
            value: vec![1],
        }]
    }

    fn reply(id: RequestId) -> Reply {
        (id, Ok(ApiResponse::Deleted))
    }

    #[test]
    fn replies_wait_for_the_batches_before_them() {
        let mut d = Disk::new();
        assert!(
            d.reply(reply(0)).is_some(),
            "nothing pending: released at once"
        );
        let (b1, t1) = d.write(put("knowledge/chunk/1"), 100, 10);
        let (b2, t2) = d.write(put("knowledge/chunk/2"), 100, 10);
        assert_eq!((t1, t2), (110, 120), "flushes complete in order");
        assert!(d.reply(reply(1)).is_none());
        assert!(d.flushed(b1).is_empty(), "batch 2 is still unflushed");
        assert_eq!(d.flushed(b2).len(), 1);
        assert_eq!(d.restored().legacy.chunks.len(), 2);
    }

    #[test]
    fn a_crash_loses_unflushed_batches_and_held_replies() {
        let mut d = Disk::new();
        let (b1, _) = d.write(put("knowledge/chunk/1"), 0, 1);
        d.flushed(b1);
        d.write(put("knowledge/chunk/2"), 0, 1);
        assert!(d.reply(reply(7)).is_none());
        assert_eq!(
            d.crash(),
            Loss {
                batches: 1,
                replies: 1
            }
        );
        let restored = d.restored();
        assert_eq!(restored.legacy.chunks.len(), 1);
        assert!(
            d.reply(reply(8)).is_some(),
            "nothing pending after the crash"
        );
    }

    #[test]
    fn delete_prefix_removes_only_that_prefix() {
        let mut d = Disk::new();
        let mut ops = put("knowledge/chunk/1");
        ops.extend(put("knowledge/snapshot"));
        ops.extend(put("knowledge/chunk/2"));
        let (b, _) = d.write(ops, 0, 1);
        d.flushed(b);
        let (b, _) = d.write(vec![StoreOp::DeletePrefix("knowledge/chunk/".into())], 0, 1);
        d.flushed(b);
        let r = d.restored();
        assert!(r.legacy.chunks.is_empty());
        assert!(r.legacy.snapshot.is_some());
    }
}
