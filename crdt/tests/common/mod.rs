//! Helpers shared by the integration tests.

use mc_crdt::{ActorId, KnowledgeBase, SyncSession};

/// A distinct actor id per small number.
pub fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

/// Runs the sync protocol between `a` and `b` until both sides generate `None`; returns the
/// number of messages exchanged. Panics (test failure) if it does not terminate.
pub fn sync_pair(
    a: &mut KnowledgeBase,
    a_to_b: &mut SyncSession,
    b: &mut KnowledgeBase,
    b_to_a: &mut SyncSession,
) -> usize {
    let mut messages = 0;
    for _ in 0..64 {
        let mut progressed = false;
        if let Some(msg) = a.generate_sync_message(a_to_b) {
            b.receive_sync_message(b_to_a, &msg)
                .expect("b accepts a's message");
            messages += 1;
            progressed = true;
        }
        if let Some(msg) = b.generate_sync_message(b_to_a) {
            a.receive_sync_message(a_to_b, &msg)
                .expect("a accepts b's message");
            messages += 1;
            progressed = true;
        }
        if !progressed {
            return messages;
        }
    }
    panic!("sync did not terminate");
}

/// Syncs two fresh sessions between `a` and `b`.
#[allow(dead_code)] // not every test binary uses every helper
pub fn sync_fresh(a: &mut KnowledgeBase, b: &mut KnowledgeBase) -> usize {
    sync_pair(a, &mut SyncSession::new(), b, &mut SyncSession::new())
}
