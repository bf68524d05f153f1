//! The document registry: every replicated document a node holds, each with
//! its own Automerge state, persistence chunks and (per peer, in the core)
//! sync session.
//!
//! Today the registry holds the knowledge base, sharded over
//! [`KNOWLEDGE_SHARDS`] documents by [`mc_protocols::knowledge_shard`]; later
//! capabilities add documents of their own kinds ([`DocId`] is an open
//! family). Reads of the knowledge base go to the key's shard, listings merge
//! every shard in key order. A batch of writes is one Automerge change per
//! shard it touches, and one [`StoreOp`] batch for all of them.

use std::collections::{BTreeMap, BTreeSet};

use mc_crdt::{ActorId, Entry, Json, KnowledgeBase, Write};
use mc_protocols::{DocDigest, DocId, KNOWLEDGE_SHARDS};

use crate::store::{self, Restored, StoreOp};

/// A document is compacted once it has more incremental chunks than this
/// (or [`MAX_CHUNK_BYTES_PER_DOC`] of them): with hundreds of small
/// documents, a short run of chunks each keeps the store's key count (and
/// sled's space) low, and compacting one small document is cheap.
pub const MAX_CHUNKS_PER_DOC: usize = 32;
/// See [`MAX_CHUNKS_PER_DOC`].
pub const MAX_CHUNK_BYTES_PER_DOC: u64 = 256 * 1024;

/// One document and its persistence cursor.
#[derive(Debug)]
struct Slot {
    kb: KnowledgeBase,
    /// The sequence number its next incremental chunk gets.
    next_chunk_seq: u64,
    /// Its heads digest, while the heads have not moved since it was taken.
    digest: Option<u64>,
}

/// Every document of this node. See the [module docs](self).
#[derive(Debug)]
pub struct Documents {
    slots: BTreeMap<DocId, Slot>,
    /// Documents changed since their last save: a save visits these only.
    dirty: BTreeSet<DocId>,
}

/// A write, owned, as the core queues it.
#[derive(Debug, Clone)]
pub(crate) enum OwnedWrite {
    Put { key: String, value: Json },
    Delete { key: String },
}

impl OwnedWrite {
    pub(crate) fn key(&self) -> &str {
        match self {
            OwnedWrite::Put { key, .. } | OwnedWrite::Delete { key } => key,
        }
    }

    fn as_write(&self) -> Write<'_> {
        match self {
            OwnedWrite::Put { key, value } => Write::Put { key, value },
            OwnedWrite::Delete { key } => Write::Delete { key },
        }
    }
}

/// The splitmix64 finaliser: a cheap, well-mixed 64-bit permutation.
fn splitmix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Documents {
    /// Rebuilds every document from what the store held; a document the store
    /// has nothing of starts empty. Local changes are made by `actor`.
    pub fn load(restored: &Restored, actor: &ActorId) -> Result<Self, (DocId, mc_crdt::Error)> {
        let mut slots = BTreeMap::new();
        for id in DocId::knowledge_shards() {
            let stored = restored.docs.get(&id);
            debug_assert!(matches!(id, DocId::Knowledge { shard } if shard < KNOWLEDGE_SHARDS));
            let mut kb = KnowledgeBase::load(
                stored.and_then(|d| d.snapshot.as_deref()),
                stored
                    .into_iter()
                    .flat_map(|d| d.chunks.iter().map(|(_, bytes)| bytes.as_slice())),
                actor.clone(),
            )
            .map_err(|e| (id, e))?;
            kb.set_compaction_threshold(MAX_CHUNKS_PER_DOC, MAX_CHUNK_BYTES_PER_DOC);
            let next_chunk_seq = stored.map_or(0, store::RestoredDoc::next_seq);
            slots.insert(
                id,
                Slot {
                    kb,
                    next_chunk_seq,
                    digest: None,
                },
            );
        }
        Ok(Self {
            slots,
            dirty: BTreeSet::new(),
        })
    }

    /// The ids of every document, in order.
    pub fn ids(&self) -> impl Iterator<Item = DocId> + '_ {
        self.slots.keys().copied()
    }

    /// One document, for reads.
    pub fn doc(&self, id: &DocId) -> Option<&KnowledgeBase> {
        self.slots.get(id).map(|s| &s.kb)
    }

    /// One document, for the sync protocol (its cached digest is dropped:
    /// the caller may move its heads).
    pub(crate) fn doc_mut(&mut self, id: &DocId) -> Option<&mut KnowledgeBase> {
        self.slots.get_mut(id).map(|s| {
            s.digest = None;
            &mut s.kb
        })
    }

    /// The knowledge entry under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Entry>, mc_crdt::Error> {
        match self.doc(&DocId::knowledge_of(key)) {
            Some(kb) => kb.get(key),
            None => Ok(None),
        }
    }

    /// Whether `key` holds a knowledge entry.
    pub fn contains_key(&self, key: &str) -> Result<bool, mc_crdt::Error> {
        match self.doc(&DocId::knowledge_of(key)) {
            Some(kb) => kb.contains_key(key),
            None => Ok(false),
        }
    }

    /// Knowledge entries whose key starts with `prefix`, across every shard,
    /// sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<Entry>, mc_crdt::Error> {
        let mut out = Vec::new();
        for id in DocId::knowledge_shards() {
            if let Some(kb) = self.doc(&id) {
                out.extend(kb.list(prefix)?);
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Knowledge keys in every shard.
    pub fn len(&self) -> usize {
        DocId::knowledge_shards()
            .filter_map(|id| self.doc(&id))
            .map(KnowledgeBase::len)
            .sum()
    }

    /// Whether the knowledge base holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every document's heads, as `doc:hash` strings, sorted: equal on two
    /// nodes exactly when they hold the same state.
    pub fn heads(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for (id, slot) in &mut self.slots {
            out.extend(slot.kb.heads().into_iter().map(|h| format!("{id}:{h}")));
        }
        out
    }

    /// Changes, entries and saved bytes summed over the knowledge shards.
    pub fn knowledge_stats(&mut self) -> mc_crdt::DocStats {
        let mut total = mc_crdt::DocStats {
            entries: 0,
            changes: 0,
            heads: Vec::new(),
            saved_bytes: 0,
            incrementals_since_compaction: 0,
        };
        for (id, slot) in &mut self.slots {
            let stats = slot.kb.stats();
            total.entries += stats.entries;
            total.changes += stats.changes;
            total.saved_bytes += stats.saved_bytes;
            total.incrementals_since_compaction += stats.incrementals_since_compaction;
            total
                .heads
                .extend(stats.heads.into_iter().map(|h| format!("{id}:{h}")));
        }
        total
    }

    /// The heads digest of every document, by id, for
    /// [`mc_protocols::Message::Digest`].
    pub fn digests(&mut self) -> Vec<DocDigest> {
        self.slots
            .iter_mut()
            .map(|(id, slot)| DocDigest {
                doc: *id,
                heads: *slot.digest.get_or_insert_with(|| slot.kb.heads_digest()),
            })
            .collect()
    }

    /// One number for every document's heads, for
    /// [`mc_protocols::Message::RootDigest`]: each document's digest is mixed
    /// with its position (splitmix64), so two documents swapping states
    /// changes it.
    pub fn root_digest(&mut self) -> u64 {
        self.digests().iter().enumerate().fold(0, |acc, (i, d)| {
            acc ^ splitmix64(d.heads ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        })
    }

    /// Marks a document as changed (by a peer) so that the next save covers it.
    pub(crate) fn mark_changed(&mut self, id: &DocId) {
        if let Some(slot) = self.slots.get_mut(id) {
            slot.digest = None;
            self.dirty.insert(*id);
        }
    }

    /// Applies `writes` in order, one Automerge change per knowledge shard
    /// they touch. Returns, per write, whether it changed its document, or
    /// the error of a shard that refused its writes.
    pub(crate) fn apply_writes(
        &mut self,
        writes: &[OwnedWrite],
        author: &str,
        now: u64,
    ) -> Vec<Result<bool, String>> {
        let mut by_shard: BTreeMap<DocId, Vec<usize>> = BTreeMap::new();
        for (i, write) in writes.iter().enumerate() {
            by_shard
                .entry(DocId::knowledge_of(write.key()))
                .or_default()
                .push(i);
        }
        let mut results: Vec<Result<bool, String>> = vec![Ok(false); writes.len()];
        for (id, indices) in by_shard {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            slot.digest = None;
            let batch: Vec<Write<'_>> = indices.iter().map(|&i| writes[i].as_write()).collect();
            match slot.kb.apply_writes(&batch, author, now) {
                Ok(changed) => {
                    if changed.iter().any(|c| *c) {
                        self.dirty.insert(id);
                    }
                    for (&i, did) in indices.iter().zip(changed) {
                        results[i] = Ok(did);
                    }
                }
                Err(error) => {
                    let error = format!("{id}: {error}");
                    for &i in &indices {
                        results[i] = Err(error.clone());
                    }
                }
            }
        }
        results
    }

    /// Stores whole entries (author and time kept) in their shards, one
    /// change per shard; entries a shard refuses are logged and skipped.
    pub(crate) fn restore_entries(&mut self, entries: &[Entry]) {
        let mut by_shard: BTreeMap<DocId, Vec<Write<'_>>> = BTreeMap::new();
        for entry in entries {
            by_shard
                .entry(DocId::knowledge_of(&entry.key))
                .or_default()
                .push(Write::Restore { entry });
        }
        for (id, writes) in by_shard {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.digest = None;
                match slot.kb.apply_writes(&writes, "", 0) {
                    Ok(_) => {
                        self.dirty.insert(id);
                    }
                    Err(error) => tracing::error!(doc = %id, %error, "cannot restore entries"),
                }
            }
        }
    }

    /// Writes one knowledge entry as its own change (round records, campaign
    /// declarations).
    pub(crate) fn put(
        &mut self,
        key: &str,
        value: &Json,
        author: &str,
        now: u64,
    ) -> Result<(), mc_crdt::Error> {
        let id = DocId::knowledge_of(key);
        match self.slots.get_mut(&id) {
            Some(slot) => {
                slot.digest = None;
                slot.kb.put(key, value, author, now)?;
                self.dirty.insert(id);
                Ok(())
            }
            None => Err(mc_crdt::Error::Layout(format!("no document {id}"))),
        }
    }

    /// The local changes of every document not yet handed out, per document.
    pub(crate) fn take_local_changes(&mut self) -> Vec<(DocId, Vec<u8>)> {
        self.slots
            .iter_mut()
            .filter_map(|(id, slot)| {
                let bytes = slot.kb.take_local_changes();
                (!bytes.is_empty()).then_some((*id, bytes))
            })
            .collect()
    }

    /// The store writes that save every changed document: an incremental
    /// chunk each, or a compacted snapshot that replaces the document's
    /// chunks when they have grown large. Returns the ops and the number of
    /// compactions among them.
    pub(crate) fn save_changed(&mut self) -> (Vec<StoreOp>, u64) {
        let mut ops = Vec::new();
        let mut compactions = 0;
        for id in std::mem::take(&mut self.dirty) {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let chunk = slot.kb.save_incremental();
            if chunk.is_empty() {
                continue;
            }
            if slot.kb.needs_compaction() {
                compactions += 1;
                ops.push(StoreOp::Put {
                    key: store::snapshot_key(&id),
                    value: slot.kb.compact(),
                });
                ops.push(StoreOp::DeletePrefix(store::chunk_prefix(&id)));
                slot.next_chunk_seq = 0;
            } else {
                ops.push(StoreOp::Put {
                    key: store::chunk_key(&id, slot.next_chunk_seq),
                    value: chunk,
                });
                slot.next_chunk_seq += 1;
            }
        }
        (ops, compactions)
    }

    /// The whole document as Automerge bytes (for export; persistence is
    /// unaffected).
    pub(crate) fn export(&mut self, id: &DocId) -> Option<Vec<u8>> {
        self.slots.get_mut(id).map(|s| s.kb.export())
    }

    /// Size and heads of every document, for `GET /v1/documents`.
    pub(crate) fn infos(&mut self) -> Vec<crate::api::DocumentInfo> {
        self.slots
            .iter_mut()
            .map(|(id, slot)| {
                let stats = slot.kb.stats();
                crate::api::DocumentInfo {
                    id: id.to_string(),
                    entries: stats.entries,
                    changes: stats.changes,
                    heads: stats.heads,
                    saved_bytes: stats.saved_bytes,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_digest_sees_any_document_move_and_caches_stay_fresh() {
        let restored = Restored::default();
        let mut a = Documents::load(&restored, &ActorId::from(&b"a"[..])).unwrap();
        let mut b = Documents::load(&restored, &ActorId::from(&b"b"[..])).unwrap();
        assert_eq!(a.root_digest(), b.root_digest(), "both at genesis");
        let write = [OwnedWrite::Put {
            key: "k".into(),
            value: Json::from(serde_json::json!(1)),
        }];
        assert!(a.apply_writes(&write, "a", 1)[0].is_ok());
        assert_ne!(a.root_digest(), b.root_digest(), "a write moves the root");
        // The same change arriving at b brings the roots together again.
        let changes = a.take_local_changes();
        for (doc, bytes) in changes {
            b.doc_mut(&doc).unwrap().apply_changes(&bytes).unwrap();
        }
        assert_eq!(a.root_digest(), b.root_digest());
        assert_eq!(a.digests(), b.digests());
    }
}
