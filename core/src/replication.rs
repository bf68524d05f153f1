//! How documents travel between nodes: gossip of local changes, the heads
//! digest that opens every anti-entropy round, and Automerge sync sessions,
//! one per (peer, document).
//!
//! - A batch's local changes leave as **one** gossip message listing each
//!   document it touched ([`Message::Changes`]). One that does not fit a
//!   gossip message, or a broadcast the transport could not send, is
//!   repaired by a digest round at once instead.
//! - Every `sync_interval_ms` (and on connect) a node sends each peer a
//!   [`Message::RootDigest`]: one number for all its documents' heads. A
//!   peer whose root differs answers with a [`Message::Digest`] (one digest
//!   per document), and the first node starts a sync exchange only for the
//!   documents that differ. An idle round costs one 10-byte message per peer
//!   whatever the number of documents.
//! - What sync brings is passed on to the other peers at once (heads only
//!   with gossip on, the changes themselves without), so a change crosses
//!   the mesh within one interval even without gossip.

use mc_protocols::{Changes, DocDigest, DocId, MAX_MESSAGE_BYTES, Message, NodeId, SyncMessage};

use std::collections::BTreeMap;

use mc_crdt::KnowledgeBase;

use crate::{Node, Output, Topic};

/// How to open a sync exchange with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// A full Automerge sync message: our Bloom filter and the changes the
    /// peer's last message showed it lacking.
    Push,
    /// Our heads only; the peer's answer says what it lacks now.
    Probe,
}

impl Node {
    /// Checks gossiped changes, document by document, and stages them for
    /// the end of the batch (where a burst is applied in one pass).
    pub(crate) fn on_changes(&mut self, from: &NodeId, changes: Vec<Changes>) {
        for Changes { doc, bytes } in changes {
            if self.docs.doc(&doc).is_none() {
                self.counters.rejected_messages += 1;
                tracing::warn!(peer = %from, %doc, "gossip for a document this node does not hold");
                continue;
            }
            match KnowledgeBase::decode_changes(&bytes) {
                Ok(decoded) => {
                    self.counters.gossip_received += 1;
                    self.batch.received.entry(doc).or_default().push(decoded);
                }
                Err(error) => {
                    self.counters.rejected_messages += 1;
                    tracing::warn!(peer = %from, %doc, %error, "rejected gossiped changes");
                }
            }
        }
    }

    /// One step of a peer's sync exchange for `doc`.
    pub(crate) fn on_sync(&mut self, from: NodeId, doc: DocId, data: &[u8]) {
        self.counters.sync_received += 1;
        let Some(peer) = self.peers.get_mut(&from) else {
            // A late message from a peer that has disconnected: its sessions
            // are gone, and the next connection starts fresh ones.
            tracing::debug!(peer = %from, "dropped a sync message from a disconnected peer");
            return;
        };
        let Some(kb) = self.docs.doc_mut(&doc) else {
            self.counters.rejected_messages += 1;
            tracing::warn!(peer = %from, %doc, "sync for a document this node does not hold");
            return;
        };
        let session = peer.sync.entry(doc).or_default();
        match kb.receive_sync_message(session, data) {
            Ok(changed) => {
                peer.last_sync_ms = Some(self.now);
                self.send_sync(&from, doc, Offer::Push);
                if changed {
                    self.docs.mark_changed(&doc);
                    self.batch.changed = true;
                    let others: Vec<NodeId> =
                        self.peers.keys().filter(|p| **p != from).cloned().collect();
                    for peer in others {
                        self.send_sync(&peer, doc, self.round_opening());
                    }
                }
            }
            Err(error) => {
                self.counters.rejected_messages += 1;
                session.reset();
                tracing::warn!(peer = %from, %doc, %error, "rejected a sync message");
            }
        }
    }

    /// A peer's root digest: equal means in sync; otherwise answer with the
    /// per-document digests so that the peer syncs what differs.
    pub(crate) fn on_root_digest(&mut self, from: NodeId, theirs: u64) {
        self.counters.sync_received += 1;
        let mine = self.docs.root_digest();
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        peer.last_sync_ms = Some(self.now);
        peer.in_sync = mine == theirs;
        if mine != theirs {
            self.counters.sync_sent += 1;
            let digests = Message::Digest(self.docs.digests());
            self.send(&from, &digests);
        }
    }

    /// A peer's per-document digests: sync every document that differs.
    pub(crate) fn on_digest(&mut self, from: NodeId, theirs: Vec<DocDigest>) {
        self.counters.sync_received += 1;
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        peer.last_sync_ms = Some(self.now);
        let theirs: BTreeMap<DocId, u64> = theirs.into_iter().map(|d| (d.doc, d.heads)).collect();
        let differing: Vec<DocId> = self
            .docs
            .digests()
            .into_iter()
            .filter(|mine| theirs.get(&mine.doc) != Some(&mine.heads))
            .map(|mine| mine.doc)
            .collect();
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.in_sync = differing.is_empty();
        }
        for doc in differing {
            self.send_sync(&from, doc, Offer::Push);
        }
    }

    /// Opens an anti-entropy round with `peer`: our root digest.
    pub(crate) fn send_digest(&mut self, peer: &NodeId) {
        if !self.peers.contains_key(peer) {
            return;
        }
        self.counters.sync_sent += 1;
        let root = Message::RootDigest(self.docs.root_digest());
        self.send(peer, &root);
    }

    /// Opens an anti-entropy round with every connected peer.
    pub(crate) fn send_digests(&mut self) {
        let peers: Vec<NodeId> = self.peers.keys().cloned().collect();
        for peer in peers {
            self.send_digest(&peer);
        }
    }

    /// Broadcasts the local changes made since the last broadcast, or leaves
    /// them to a digest round when gossip is off or they do not fit.
    pub(crate) fn publish_local_changes(&mut self) {
        let changes: Vec<Changes> = self
            .docs
            .take_local_changes()
            .into_iter()
            .map(|(doc, bytes)| Changes { doc, bytes })
            .collect();
        if changes.is_empty() || !self.config.gossip {
            return; // without gossip, anti-entropy carries them at the next interval
        }
        match mc_protocols::encode(&Message::Changes(changes), self.config.max_gossip_bytes) {
            Ok(bytes) => {
                self.counters.gossip_published += 1;
                self.outputs.push_back(Output::Broadcast {
                    topic: Topic::Knowledge,
                    bytes,
                });
            }
            Err(error) => {
                self.counters.gossip_oversize_fallbacks += 1;
                tracing::info!(%error, "changes too large for gossip, sending them by sync");
                self.send_digests();
            }
        }
    }

    /// Queues one store batch that saves every changed document.
    pub(crate) fn persist_changed(&mut self) {
        let (ops, compactions) = self.docs.save_changed();
        self.counters.compactions += compactions;
        if !ops.is_empty() {
            self.outputs.push_back(Output::Persist(ops));
        }
    }

    /// How a sync round this node starts opens: with gossip on, changes
    /// normally reach peers by gossip, so a round opens with our heads only
    /// and peers ask for what they lack; without gossip, sync is the only
    /// carrier and pushes changes at once.
    pub(crate) fn round_opening(&self) -> Offer {
        if self.config.gossip {
            Offer::Probe
        } else {
            Offer::Push
        }
    }

    /// Sends the next step of the sync protocol for `doc` to `peer`, if
    /// there is one.
    pub(crate) fn send_sync(&mut self, peer: &NodeId, doc: DocId, offer: Offer) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let Some(kb) = self.docs.doc_mut(&doc) else {
            return;
        };
        let session = state.sync.entry(doc).or_default();
        let data = match offer {
            Offer::Push => kb.generate_sync_message(session),
            Offer::Probe => kb.generate_sync_probe(session),
        };
        let Some(data) = data else {
            return;
        };
        self.counters.sync_sent += 1;
        self.send(peer, &Message::Sync(SyncMessage { doc, data }));
    }

    pub(crate) fn send(&mut self, to: &NodeId, message: &Message) {
        match mc_protocols::encode(message, MAX_MESSAGE_BYTES) {
            Ok(bytes) => self.outputs.push_back(Output::Send {
                to: to.clone(),
                bytes,
            }),
            Err(error) => {
                tracing::error!(peer = %to, %error, "cannot encode a message for a peer");
                if let (Some(p), Message::Sync(SyncMessage { doc, .. })) =
                    (self.peers.get_mut(to), message)
                    && let Some(session) = p.sync.get_mut(doc)
                {
                    session.reset();
                }
            }
        }
    }
}
