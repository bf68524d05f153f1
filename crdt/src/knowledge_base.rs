//! [`KnowledgeBase`]: the replicated key → entry map, and its local read/write operations.
//!
//! Persistence (`load`, `save_incremental`, `compact`) lives in `persistence.rs` and the sync
//! protocol in `sync.rs`; both are further `impl KnowledgeBase` blocks over the same state.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value, ValueRef};
use serde::{Deserialize, Serialize};

use crate::entry::{self, Entry};
use crate::{Error, Json, chunks};

/// Name of the root map holding every entry.
pub(crate) const ENTRIES: &str = "entries";

/// Actor of the shared genesis change (see [`genesis_doc`]). Never use it as a replica's actor.
pub(crate) const GENESIS_ACTOR: &[u8] = b"mc-crdt/genesis/v1";

/// Default for [`KnowledgeBase::set_compaction_threshold`]: incremental chunks.
pub const DEFAULT_MAX_INCREMENTALS: usize = 256;
/// Default for [`KnowledgeBase::set_compaction_threshold`]: incremental bytes (1 MiB).
pub const DEFAULT_MAX_INCREMENTAL_BYTES: u64 = 1024 * 1024;

/// A snapshot of document and persistence counters, for metrics and status pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocStats {
    /// Number of keys in the entries map (malformed entries included).
    pub entries: usize,
    /// Number of changes in the document's history (the genesis change included).
    pub changes: usize,
    /// Current heads, lowercase hex, sorted.
    pub heads: Vec<String>,
    /// Size of the last full save ([`KnowledgeBase::compact`], or the snapshot given to
    /// [`KnowledgeBase::load`]) plus every incremental chunk saved or loaded since.
    pub saved_bytes: u64,
    /// Incremental chunks saved (or loaded) since the last compaction.
    pub incrementals_since_compaction: usize,
}

/// The shared knowledge base of one region node: an Automerge document wrapped behind a typed
/// key → [`Entry`] API. See the crate documentation for the document layout.
#[derive(Debug)]
pub struct KnowledgeBase {
    pub(crate) doc: AutoCommit,
    /// Heads covered by what has been handed out by `compact`/`save_incremental` (or loaded).
    pub(crate) saved_heads: Vec<ChangeHash>,
    pub(crate) saved_bytes: u64,
    pub(crate) incrementals: usize,
    pub(crate) incremental_bytes: u64,
    pub(crate) max_incrementals: usize,
    pub(crate) max_incremental_bytes: u64,
    /// The next incremental save, already in hand: set when one gossiped change was applied on
    /// top of a fully saved document, so that [`Self::save_incremental`] need not rebuild the
    /// bytes Automerge just parsed (see [`UnsavedChange`]).
    pub(crate) unsaved: Option<UnsavedChange>,
    /// Local changes made since the last [`KnowledgeBase::take_local_changes`], oldest first.
    pub(crate) unpublished: Vec<ChangeHash>,
}

/// Changes from a peer, decoded and checked but not yet applied (see
/// [`KnowledgeBase::decode_changes`]).
#[derive(Debug, Clone)]
pub struct DecodedChanges(Vec<automerge::Change>);

impl DecodedChanges {
    /// How many changes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One write of a [`KnowledgeBase::apply_writes`] batch.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: &'a str,
        /// The value.
        value: &'a Json,
    },
    /// Remove `key` (nothing happens if it is absent).
    Delete {
        /// The key.
        key: &'a str,
    },
    /// Store `entry` under its key with its own author and time (moving
    /// entries from one document to another).
    Restore {
        /// The entry.
        entry: &'a Entry,
    },
}

/// The raw bytes of the only change applied since the last save, and the heads they are valid
/// between. `save_incremental` uses them only while the saved heads are still `base` and the
/// document's heads are still `heads`: any other change moves the heads, and any save moves
/// the saved heads, so stale bytes are never used.
#[derive(Debug)]
pub(crate) struct UnsavedChange {
    pub(crate) base: Vec<ChangeHash>,
    pub(crate) heads: Vec<ChangeHash>,
    pub(crate) bytes: Vec<u8>,
}

/// The document every replica starts from: one change, by [`GENESIS_ACTOR`] at time 0, creating
/// the root `"entries"` map.
///
/// Because actor, sequence number, time and operations are fixed, every replica produces a
/// byte-identical change with the same hash, so all replicas share one `"entries"` map object.
/// (If each replica created the map itself, concurrent creations would conflict and the losing
/// replica's entries would vanish behind the winning map.)
pub(crate) fn genesis_doc() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(GENESIS_ACTOR));
    // Cannot fail on an empty document; if it ever did, every read would report
    // `Error::Layout`, which is better than panicking.
    if doc.put_object(ROOT, ENTRIES, ObjType::Map).is_ok() {
        doc.commit_with(CommitOptions::default().with_time(0));
    }
    doc
}

/// Converts a change hash to the hex form used throughout the public API.
pub(crate) fn sorted_hex(heads: &[ChangeHash]) -> Vec<String> {
    let mut hex: Vec<String> = heads.iter().map(ChangeHash::to_string).collect();
    hex.sort_unstable();
    hex
}

/// The string inside a scalar read with `get`, or a description of what was found instead.
fn value_text<'a>(value: &'a Value<'_>) -> Result<&'a str, String> {
    match value {
        Value::Scalar(scalar) => match scalar.as_ref() {
            automerge::ScalarValue::Str(text) => Ok(text.as_str()),
            other => Err(format!("scalar {other}")),
        },
        Value::Object(kind) => Err(format!("a {kind:?} object")),
    }
}

/// Same as [`value_text`] for values read with `map_range`.
fn value_ref_text<'a>(value: &'a ValueRef<'_>) -> Result<&'a str, String> {
    match value {
        ValueRef::Scalar(automerge::ScalarValueRef::Str(text)) => Ok(text.as_ref()),
        ValueRef::Scalar(other) => Err(format!("scalar {other}")),
        ValueRef::Object(kind) => Err(format!("a {kind:?} object")),
    }
}

impl KnowledgeBase {
    /// An empty knowledge base whose local changes are made by `actor`.
    ///
    /// `actor` must be unique to this replica *and this run of it* (see the crate docs on actor
    /// reuse) and must not be the reserved genesis actor.
    pub fn new(actor: ActorId) -> Self {
        let mut doc = genesis_doc();
        doc.set_actor(actor);
        Self::from_doc(doc, Vec::new())
    }

    pub(crate) fn from_doc(doc: AutoCommit, saved_heads: Vec<ChangeHash>) -> Self {
        Self {
            doc,
            saved_heads,
            saved_bytes: 0,
            incrementals: 0,
            incremental_bytes: 0,
            max_incrementals: DEFAULT_MAX_INCREMENTALS,
            max_incremental_bytes: DEFAULT_MAX_INCREMENTAL_BYTES,
            unsaved: None,
            unpublished: Vec::new(),
        }
    }

    /// The actor this replica's local changes are attributed to.
    pub fn actor(&self) -> &ActorId {
        self.doc.get_actor()
    }

    /// The object id of the root `"entries"` map (the conflict winner, should a hostile peer
    /// have written something else under that root key).
    fn entries_obj(&self) -> Result<ObjId, Error> {
        match self.doc.get(ROOT, ENTRIES)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            Some((other, _)) => Err(Error::Layout(format!(
                "root {ENTRIES:?} is {other}, expected a map"
            ))),
            None => Err(Error::Layout(format!("root {ENTRIES:?} is missing"))),
        }
    }

    /// Commits the pending operations as one change stamped with `time_ms`.
    fn commit(&mut self, time_ms: u64) {
        let time = i64::try_from(time_ms).unwrap_or(i64::MAX);
        if let Some(hash) = self
            .doc
            .commit_with(CommitOptions::default().with_time(time))
        {
            self.unpublished.push(hash);
        }
    }

    /// Writes `value` under `key`, replacing any previous entry, as one Automerge change.
    ///
    /// `author` and `now_ms` are stored with the value; `now_ms` is also the change's timestamp.
    pub fn put(&mut self, key: &str, value: &Json, author: &str, now_ms: u64) -> Result<(), Error> {
        self.apply_writes(&[Write::Put { key, value }], author, now_ms)
            .map(|_| ())
    }

    /// Applies many writes as **one** Automerge change, in order (a later write to a key wins
    /// over an earlier one of the same batch). Returns, per write, whether it changed the
    /// document: a put always does, a delete only when the key held a value.
    ///
    /// One change for a batch is what makes a burst of writes cheap: one change header and
    /// hash, one incremental save, one gossip message. If any write fails, none is applied.
    pub fn apply_writes(
        &mut self,
        writes: &[Write<'_>],
        author: &str,
        now_ms: u64,
    ) -> Result<Vec<bool>, Error> {
        let entries = self.entries_obj()?;
        let mut changed = Vec::with_capacity(writes.len());
        for write in writes {
            let result = match *write {
                Write::Put { key, value } => entry::encode(value, author, now_ms)
                    .and_then(|encoded| Ok(self.doc.put(&entries, key, encoded)?))
                    .map(|()| true),
                Write::Restore { entry } => {
                    entry::encode(&entry.value, &entry.author, entry.updated_at_ms)
                        .and_then(|encoded| Ok(self.doc.put(&entries, &entry.key, encoded)?))
                        .map(|()| true)
                }
                Write::Delete { key } => match self.doc.get(&entries, key) {
                    Ok(Some(_)) => self
                        .doc
                        .delete(&entries, key)
                        .map(|()| true)
                        .map_err(Error::from),
                    Ok(None) => Ok(false),
                    Err(error) => Err(error.into()),
                },
            };
            match result {
                Ok(did) => changed.push(did),
                Err(error) => {
                    self.doc.rollback();
                    return Err(error);
                }
            }
        }
        if changed.iter().any(|c| *c) {
            self.commit(now_ms);
        } else {
            self.doc.rollback();
        }
        Ok(changed)
    }

    /// The entry under `key`, if any.
    ///
    /// A value that is not a valid encoded entry yields [`Error::MalformedEntry`].
    pub fn get(&self, key: &str) -> Result<Option<Entry>, Error> {
        let entries = self.entries_obj()?;
        match self.doc.get(&entries, key)? {
            Some((value, _)) => entry::decode(key, value_text(&value)).map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` holds a value (valid or malformed).
    pub fn contains_key(&self, key: &str) -> Result<bool, Error> {
        let entries = self.entries_obj()?;
        Ok(self.doc.get(&entries, key)?.is_some())
    }

    /// Removes `key` as one Automerge change; returns whether it existed. Deleting an absent key
    /// makes no change (so [`Self::last_local_change`] still returns the previous one).
    ///
    /// The change carries timestamp 0: the API has no clock input for deletions.
    pub fn delete(&mut self, key: &str) -> Result<bool, Error> {
        let changed = self.apply_writes(&[Write::Delete { key }], "", 0)?;
        Ok(changed.first().copied().unwrap_or(false))
    }

    /// Entries whose key starts with `prefix` (`""` lists everything), sorted by key.
    ///
    /// Malformed values (see [`Self::get`]) are skipped so that one bad write by a buggy peer
    /// cannot hide every other entry; use `get` on a key to see its error.
    pub fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        let entries = self.entries_obj()?;
        let mut out: Vec<Entry> = self
            .doc
            .map_range(&entries, prefix.to_owned()..)
            .take_while(|item| item.key.starts_with(prefix))
            .filter_map(|item| entry::decode(&item.key, value_ref_text(&item.value)).ok())
            .collect();
        // Automerge already iterates in key order; sorting again keeps the contract explicit.
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Number of keys in the knowledge base (malformed entries included; 0 if the document
    /// layout is invalid).
    pub fn len(&self) -> usize {
        self.entries_obj()
            .map(|entries| self.doc.length(&entries))
            .unwrap_or(0)
    }

    /// Whether the knowledge base holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The document's current heads as lowercase hex, sorted.
    pub fn heads(&mut self) -> Vec<String> {
        sorted_hex(&self.doc.get_heads())
    }

    /// A digest of the heads: XOR of the first 8 bytes (little endian) of each head's hash.
    /// Equal heads give equal digests whatever their order; different heads differ but for a
    /// 2^-64 chance.
    pub fn heads_digest(&mut self) -> u64 {
        self.doc.get_heads().iter().fold(0, |acc, head| {
            let mut first = [0u8; 8];
            first.copy_from_slice(&head.0[..8]);
            acc ^ u64::from_le_bytes(first)
        })
    }

    /// Document and persistence counters.
    pub fn stats(&mut self) -> DocStats {
        let changes = usize::try_from(self.doc.stats().num_changes).unwrap_or(usize::MAX);
        DocStats {
            entries: self.len(),
            changes,
            heads: self.heads(),
            saved_bytes: self.saved_bytes,
            incrementals_since_compaction: self.incrementals,
        }
    }

    /// Raw bytes of the latest change made by this replica's actor (normally the last
    /// successful `put`/`delete`), for gossip; `None` before the first local change.
    pub fn last_local_change(&mut self) -> Option<Vec<u8>> {
        self.doc
            .get_last_local_change()
            .map(|change| change.raw_bytes().to_vec())
    }

    /// The raw bytes of every local change made since the previous call (concatenated, oldest
    /// first), for gossip: what a batch of writes added, even when other changes were applied
    /// in between. Empty when there are none.
    pub fn take_local_changes(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for hash in std::mem::take(&mut self.unpublished) {
            if let Some(change) = self.doc.get_change_by_hash(&hash) {
                bytes.extend_from_slice(change.raw_bytes());
            }
        }
        bytes
    }

    /// Decodes and checks changes received from a peer without touching the document, so that
    /// many messages can be applied later in one [`Self::apply_decoded`] (one pass over the
    /// document instead of one per message). Garbage is an error here, and only here.
    pub fn decode_changes(bytes: &[u8]) -> Result<DecodedChanges, Error> {
        Ok(DecodedChanges(chunks::decode_changes(bytes)?))
    }

    /// Applies changes decoded by [`Self::decode_changes`], all in one Automerge call; returns
    /// whether the heads changed. Changes whose dependencies are missing are queued, as with
    /// [`Self::apply_changes`].
    pub fn apply_decoded(&mut self, batches: Vec<DecodedChanges>) -> Result<bool, Error> {
        let changes: Vec<automerge::Change> = batches.into_iter().flat_map(|b| b.0).collect();
        if changes.is_empty() {
            return Ok(false);
        }
        let before = self.doc.get_heads();
        self.doc.apply_changes(changes)?;
        Ok(self.doc.get_heads() != before)
    }

    /// Applies changes received by gossip: one or more concatenated raw changes, compressed
    /// changes or whole-document snapshots (anything `save_incremental`/`compact` produce).
    ///
    /// The bytes are fully decoded and checksummed before the document is touched, so garbage
    /// yields an error and no modification. Changes whose dependencies are missing are queued by
    /// Automerge and applied once the dependencies arrive (by gossip or sync). Returns whether
    /// the heads changed.
    pub fn apply_changes(&mut self, bytes: &[u8]) -> Result<bool, Error> {
        let changes = chunks::decode_changes(bytes)?;
        if changes.is_empty() {
            return Ok(false);
        }
        let before = self.doc.get_heads();
        // Only the single-change case is worth remembering (it is what gossip carries).
        let single = match changes.as_slice() {
            [change] if before == self.saved_heads => Some((change.hash(), change.deps().to_vec())),
            _ => None,
        };
        let single_bytes = single.as_ref().map(|_| changes[0].raw_bytes().to_vec());
        self.doc.apply_changes(changes)?;
        let after = self.doc.get_heads();
        if let (Some((hash, deps)), Some(bytes)) = (single, single_bytes) {
            // The change alone was added iff the heads moved from `before` to exactly
            // `before - deps + hash`: had it been queued, nothing would have moved; had it
            // released queued changes, those (descendants of it) would be heads instead.
            let mut expected: Vec<ChangeHash> = before
                .iter()
                .filter(|h| !deps.contains(h))
                .copied()
                .chain(std::iter::once(hash))
                .collect();
            expected.sort_unstable();
            if after != before && after == expected {
                self.unsaved = Some(UnsavedChange {
                    base: before.clone(),
                    heads: after.clone(),
                    bytes,
                });
            }
        }
        Ok(after != before)
    }
}
