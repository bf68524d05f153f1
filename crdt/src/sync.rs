//! The Automerge sync protocol between two replicas, one [`SyncSession`] per connected peer.
//!
//! Each side calls [`KnowledgeBase::generate_sync_message`] and sends any message it returns;
//! on receipt it calls [`KnowledgeBase::receive_sync_message`] and then generates again. The
//! exchange is finished when both sides generate `None`. A session only ever has one message in
//! flight: after sending, `generate_sync_message` returns `None` until the peer's reply has been
//! received, so a lost message stalls the session — call [`SyncSession::reset`] when the
//! connection to the peer is re-established.

use std::collections::BTreeSet;

use automerge::ChangeHash;
use automerge::sync::{Capability, Message, MessageFlags, MessageVersion, State, SyncDoc};

use crate::knowledge_base::sorted_hex;
use crate::{Error, KnowledgeBase, chunks};

/// Per-peer Automerge sync state. Not persisted: start a new (or [`reset`](Self::reset)) one
/// whenever the peer (re)connects.
#[derive(Debug, Default, Clone)]
pub struct SyncSession {
    state: State,
    /// The peer probed us (see [`KnowledgeBase::generate_sync_probe`]) with heads equal to ours
    /// that we had not announced to it: Automerge would not answer, so the peer would not learn
    /// that we agree; we answer with our heads (an acknowledgement it does not answer).
    owes_ack: bool,
}

impl SyncSession {
    /// A session for a peer we know nothing about.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything learned about the peer (call on reconnect).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Whether the heads the peer last announced equal our current heads.
    ///
    /// `true` means the peer's last message showed it holding exactly our current state. It can
    /// be `false` although both sides are in sync: a replica that receives a message announcing
    /// heads it already has (e.g. it caught up through a third peer) does not reply, so the
    /// sender never learns. After a completed exchange at least the side that received the last
    /// message reports `true`. Use it for status, not for correctness decisions.
    pub fn in_sync_with(&self, kb: &mut KnowledgeBase) -> bool {
        match &self.state.their_heads {
            Some(theirs) => sorted_hex(theirs) == kb.heads(),
            None => false,
        }
    }

    /// The heads the peer last announced (lowercase hex, sorted), if it announced any yet.
    pub fn peer_heads(&self) -> Option<Vec<String>> {
        self.state.their_heads.as_deref().map(sorted_hex)
    }
}

impl KnowledgeBase {
    /// The next sync message to send to the peer of `session`, or `None` if there is nothing to
    /// send (the peer is up to date, or we are waiting for its reply).
    pub fn generate_sync_message(&mut self, session: &mut SyncSession) -> Option<Vec<u8>> {
        let owes_ack = std::mem::take(&mut session.owes_ack);
        if self.nothing_to_send(session) {
            return owes_ack.then(|| self.heads_only(session, false));
        }
        self.doc
            .sync()
            .generate_sync_message(&mut session.state)
            .map(Message::encode)
    }

    /// A sync message with our heads and nothing else, with the bookkeeping of Automerge's
    /// `generate_sync_message` for a message without changes (`sent_hashes` stays as it is).
    /// `expect_answer` marks it in flight, as a message that asks the peer something.
    fn heads_only(&mut self, session: &mut SyncSession, expect_answer: bool) -> Vec<u8> {
        let heads = self.doc.get_heads();
        let state = &mut session.state;
        state.have_responded = true;
        state.last_sent_heads.clone_from(&heads);
        if expect_answer {
            state.in_flight = true;
        }
        let mut flags = MessageFlags::new();
        flags.set(MessageFlags::SUPPORTS_SYNC_RESET);
        let supports_v2 = state
            .their_capabilities
            .as_ref()
            .is_some_and(|caps| caps.contains(&Capability::MessageV2));
        let message = Message {
            heads,
            need: Vec::new(),
            have: Vec::new(),
            changes: Vec::<Vec<u8>>::new().into(),
            flags: Some(flags),
            version: if supports_v2 {
                MessageVersion::V2
            } else {
                MessageVersion::V1
            },
        };
        message.encode()
    }

    /// The opening message of a periodic anti-entropy round: our heads, and nothing else.
    ///
    /// A full sync message carries a Bloom filter of what we hold and the changes the peer's
    /// *last* message said it lacks. At a periodic round that message is seconds old: whatever
    /// gossip delivered since is missing from its filter, so a full message re-sends (and the
    /// peer re-validates and re-applies) every change gossip already delivered, and both the
    /// filter and the change list cost time that grows with the history. A probe announces our
    /// heads only. The peer answers as it would any message: it asks for any of our heads it
    /// lacks and sends a fresh filter, from which we compute exactly what it misses; if it
    /// already holds our heads its answer is a filter of what we lack (often nothing) and the
    /// round ends. So a probe trades one extra round trip when the replicas differ for no
    /// change traffic when they do not. It is an ordinary Automerge sync message (no filter, no
    /// changes), so any Automerge peer answers it.
    ///
    /// Falls back to [`Self::generate_sync_message`] when the session has not exchanged a
    /// message yet, when we ourselves lack some of the heads the peer last announced (then our
    /// message must ask for them), or when the session is read-only or due for a reset. Returns
    /// `None` in the same cases as `generate_sync_message` does.
    pub fn generate_sync_probe(&mut self, session: &mut SyncSession) -> Option<Vec<u8>> {
        if self.nothing_to_send(session) {
            return None;
        }
        let state = &session.state;
        let plain = !state.have_responded
            || state.read_only
            || state.needs_reset
            || state
                .their_heads
                .as_ref()
                .is_none_or(|theirs| !self.doc.get_missing_deps(theirs).is_empty());
        if plain {
            return self.generate_sync_message(session);
        }
        session.owes_ack = false;
        Some(self.heads_only(session, true))
    }

    /// The cases in which Automerge's `generate_sync_message` returns `None`,
    /// decided before it builds a Bloom filter and a change list (which
    /// costs time that grows with the document, for every peer at every
    /// anti-entropy round, even when the peer is up to date):
    ///
    /// - we already answered, our heads have not changed since, and the
    ///   peer's heads equal ours (it needs nothing and has nothing new);
    /// - we already answered, our heads have not changed since, and our
    ///   last message is still unanswered.
    ///
    /// Automerge would first check that the changes the peer last said it
    /// has are all known here (and send a reset otherwise); with equal heads
    /// that holds by construction, and in the second case it is checked.
    fn nothing_to_send(&mut self, session: &SyncSession) -> bool {
        let state = &session.state;
        if !state.have_responded || state.read_only {
            return false;
        }
        let heads = self.doc.get_heads();
        if state.last_sent_heads != heads {
            return false;
        }
        if state.their_heads.as_ref() == Some(&heads) {
            // Equal heads: the peer's history is ours, so every change it
            // says it has is known here.
            return true;
        }
        state.in_flight
            && state
                .their_have
                .as_ref()
                .and_then(|have| have.first())
                .is_none_or(|have| {
                    have.last_sync
                        .iter()
                        .all(|h| self.doc.get_change_meta_by_hash(h).is_some())
                })
    }

    /// Applies a sync message from the peer of `session`; returns whether our heads changed.
    ///
    /// The message and every change chunk in it are decoded strictly before anything is applied
    /// (Automerge itself would silently skip undecodable chunks), so garbage leaves both the
    /// document and the session untouched. If Automerge rejects valid-looking changes (e.g. a
    /// reused actor sequence number) the error is returned; reset the session before retrying.
    ///
    /// The state update is Automerge 0.12's `receive_sync_message` step for step (same fields,
    /// same order, same results), with one difference in cost only: Automerge trims the hashes
    /// sent in this session to those the peer's heads do not cover by walking the *whole*
    /// history behind those heads on every message, also when nothing was sent. Here the walk is
    /// skipped when the set is empty or the peer's heads are ours (they cover all we hold), and
    /// otherwise done with the change graph's clock for the peer's heads (an ancestor of the
    /// heads is exactly a change their clock covers). Change chunks are validated as strictly as
    /// before, but a whole-document chunk is no longer expanded into its changes just to be
    /// thrown away.
    pub fn receive_sync_message(
        &mut self,
        session: &mut SyncSession,
        bytes: &[u8],
    ) -> Result<bool, Error> {
        let message = Message::decode(bytes).map_err(|e| Error::SyncMessage(Box::new(e)))?;
        for chunk in message.changes.iter() {
            chunks::validate(chunk)?;
        }
        // A probe (or an acknowledgement): heads and nothing else.
        let heads_only =
            message.changes.is_empty() && message.have.is_empty() && message.need.is_empty();
        let state = &mut session.state;
        state.in_flight = false;
        // Whether the peer announces heads we have not announced to it: see `owes_ack` below.
        let news_to_us = state.last_sent_heads != message.heads;
        let before = self.doc.get_heads();
        let Message {
            heads: message_heads,
            changes: message_changes,
            need: message_need,
            have: message_have,
            flags: message_flags,
            ..
        } = message;

        if let Some(flags) = message_flags {
            // Any peer that sends the flags section supports V2 messages.
            let mut caps = vec![Capability::MessageV2];
            if flags.contains(MessageFlags::SUPPORTS_SYNC_RESET) {
                caps.push(Capability::SyncReset);
            }
            state.their_capabilities = Some(caps);
            if flags.contains(MessageFlags::SYNC_RESET) {
                state.sent_hashes.clear();
            }
            state.peer_read_only = flags.contains(MessageFlags::READ_ONLY);
        }

        let changes_is_empty = message_changes.is_empty();
        let mut after = None;
        if !changes_is_empty && !state.read_only {
            let joined: Vec<u8> = message_changes.iter().flatten().copied().collect();
            self.doc.load_incremental(&joined)?;
            let new_heads = self.doc.get_heads();
            state.shared_heads = advance_heads(&before, &new_heads, &state.shared_heads);
            after = Some(new_heads);
        }

        // Trim the sent hashes down to those the peer's heads do not cover.
        if !state.sent_hashes.is_empty() {
            let known: Vec<ChangeHash> = message_heads
                .iter()
                .filter(|h| self.doc.get_change_meta_by_hash(h).is_some())
                .copied()
                .collect();
            if known.is_empty() {
                // No heads we know: nothing is covered.
            } else if BTreeSet::from_iter(&known)
                == BTreeSet::from_iter(after.as_ref().unwrap_or(&before))
            {
                // Our own heads cover every change we hold, so every one we sent.
                state.sent_hashes.clear();
            } else {
                let uncovered: BTreeSet<ChangeHash> = self
                    .doc
                    .get_changes_meta(&known)
                    .iter()
                    .map(|meta| meta.hash)
                    .collect();
                state.sent_hashes.retain(|h| uncovered.contains(h));
            }
        }

        if changes_is_empty && message_heads == before {
            state.last_sent_heads.clone_from(&message_heads);
        }

        let known_heads: Vec<ChangeHash> = message_heads
            .iter()
            .filter(|h| self.doc.get_change_meta_by_hash(h).is_some())
            .copied()
            .collect();
        if known_heads.len() == message_heads.len() {
            state.shared_heads.clone_from(&message_heads);
            // The peer lost all its data: start a full resync.
            if message_heads.is_empty() {
                state.last_sent_heads = Vec::new();
                state.sent_hashes = BTreeSet::new();
            }
        } else {
            let merged: BTreeSet<ChangeHash> = state
                .shared_heads
                .iter()
                .chain(known_heads.iter())
                .copied()
                .collect();
            state.shared_heads = merged.into_iter().collect();
        }

        state.their_have = Some(message_have);
        state.their_heads = Some(message_heads);
        state.their_need = Some(message_need);

        let after = match after {
            Some(heads) => heads,
            None => self.doc.get_heads(),
        };
        // Answer a probe that finds us in agreement, so that the peer learns it, unless we
        // already announced these very heads to it: then it knows, and this message is its
        // answer to ours (or a probe crossing ours). So an answer is never answered, and the
        // exchange ends.
        session.owes_ack =
            heads_only && news_to_us && state.their_heads.as_deref() == Some(after.as_slice());
        Ok(after != before)
    }
}

/// Automerge's `advance_heads`: the shared heads after our heads moved from `old` to `new` —
/// our new heads that are not old ones, plus the old shared heads that are still heads; sorted.
fn advance_heads(old: &[ChangeHash], new: &[ChangeHash], shared: &[ChangeHash]) -> Vec<ChangeHash> {
    let advanced: BTreeSet<ChangeHash> = new
        .iter()
        .filter(|h| !old.contains(h))
        .chain(shared.iter().filter(|h| new.contains(h)))
        .copied()
        .collect();
    advanced.into_iter().collect()
}
