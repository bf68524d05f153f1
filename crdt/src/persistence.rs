//! Persistence of a [`KnowledgeBase`]: snapshot + incremental chunks, and compaction policy.
//!
//! The persisted form is `(snapshot: Option<bytes>, incrementals: [bytes])`. The node appends
//! what [`KnowledgeBase::save_incremental`] returns after each write (or batch of writes), and
//! when [`KnowledgeBase::needs_compaction`] says so it replaces everything with the output of
//! [`KnowledgeBase::compact`] and drops the incrementals. [`KnowledgeBase::load`] rebuilds the
//! document from that form.
//!
//! The crate tracks its own "saved up to these heads" cursor instead of relying on
//! `AutoCommit::save_incremental`: a freshly loaded `AutoCommit` has an empty save cursor, so its
//! first `save_incremental` would re-emit the whole history.

use automerge::{AutoCommit, LoadOptions, OnPartialLoad, VerificationMode};

use crate::knowledge_base::genesis_doc;
use crate::{ActorId, Error, KnowledgeBase, chunks};

impl KnowledgeBase {
    /// Rebuilds a knowledge base from what persistence stored: an optional full snapshot (the
    /// output of [`Self::compact`]) followed by incremental chunks (outputs of
    /// [`Self::save_incremental`]) in the order they were saved. Local changes made afterwards
    /// are attributed to `actor`.
    ///
    /// Everything is validated strictly: a corrupted or truncated snapshot is
    /// [`Error::Snapshot`], a bad incremental is [`Error::Incremental`] with its index. Changes
    /// in an incremental whose dependencies are missing stay queued, as with
    /// [`Self::apply_changes`].
    pub fn load<'a>(
        snapshot: Option<&[u8]>,
        incrementals: impl IntoIterator<Item = &'a [u8]>,
        actor: ActorId,
    ) -> Result<Self, Error> {
        let mut saved_bytes = 0_u64;
        let mut doc = match snapshot {
            Some(bytes) => {
                let options = LoadOptions::new()
                    .on_partial_load(OnPartialLoad::Error)
                    .verification_mode(VerificationMode::Check);
                let mut doc = AutoCommit::load_with_options(bytes, options)
                    .map_err(|e| Error::Snapshot(Box::new(e)))?;
                // Idempotent when the snapshot already contains the genesis change; needed when
                // it is an empty document.
                doc.merge(&mut genesis_doc())?;
                saved_bytes = bytes.len() as u64;
                doc
            }
            None => genesis_doc(),
        };

        let mut incremental_count = 0;
        let mut incremental_bytes = 0_u64;
        for (index, chunk) in incrementals.into_iter().enumerate() {
            let wrap = |source: Error| Error::Incremental {
                index,
                source: Box::new(source),
            };
            let changes = chunks::decode_changes(chunk).map_err(wrap)?;
            doc.apply_changes(changes).map_err(|e| wrap(e.into()))?;
            if !chunk.is_empty() {
                incremental_count += 1;
                incremental_bytes += chunk.len() as u64;
            }
        }

        doc.set_actor(actor);
        let heads = doc.get_heads();
        let mut kb = Self::from_doc(doc, heads);
        kb.saved_bytes = saved_bytes + incremental_bytes;
        kb.incrementals = incremental_count;
        kb.incremental_bytes = incremental_bytes;
        Ok(kb)
    }

    /// The changes made (locally or received) since the previous `save_incremental` or
    /// `compact` (or since `load`), as bytes to append to the store; empty if there are none.
    ///
    /// Queued changes whose dependencies are still missing are not included (they are not part
    /// of the document yet); peers will resend them.
    pub fn save_incremental(&mut self) -> Vec<u8> {
        let heads = self.doc.get_heads();
        // A change applied by gossip on top of a saved document: its bytes are what
        // `save_after` would rebuild from the op set (the raw bytes of that one change).
        let bytes = match self.unsaved.take() {
            Some(unsaved) if unsaved.base == self.saved_heads && unsaved.heads == heads => {
                unsaved.bytes
            }
            _ => self.doc.save_after(&self.saved_heads),
        };
        if !bytes.is_empty() {
            self.saved_heads = heads;
            self.incrementals += 1;
            self.incremental_bytes += bytes.len() as u64;
            self.saved_bytes += bytes.len() as u64;
        }
        bytes
    }

    /// A full compacted snapshot of the document (queued changes included). After this the
    /// persisted form should be `(Some(snapshot), [])`.
    pub fn compact(&mut self) -> Vec<u8> {
        let bytes = self.doc.save();
        self.unsaved = None;
        self.saved_heads = self.doc.get_heads();
        self.saved_bytes = bytes.len() as u64;
        self.incrementals = 0;
        self.incremental_bytes = 0;
        bytes
    }

    /// The whole document as Automerge bytes, for export to other Automerge implementations.
    /// Unlike [`Self::compact`] it does not touch the persistence cursor.
    pub fn export(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// Sets the compaction policy: [`Self::needs_compaction`] becomes true once more than
    /// `max_incrementals` chunks or more than `max_bytes` bytes of incrementals have been saved
    /// since the last compaction. Defaults: 256 chunks, 1 MiB.
    pub fn set_compaction_threshold(&mut self, max_incrementals: usize, max_bytes: u64) {
        self.max_incrementals = max_incrementals;
        self.max_incremental_bytes = max_bytes;
    }

    /// Whether the incrementals since the last compaction exceed the threshold set by
    /// [`Self::set_compaction_threshold`].
    pub fn needs_compaction(&self) -> bool {
        self.incrementals > self.max_incrementals
            || self.incremental_bytes > self.max_incremental_bytes
    }
}
