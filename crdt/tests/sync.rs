//! The sync protocol wrapper: convergence, session bookkeeping and hostile messages.

mod common;

use automerge::sync::Message;
use common::{actor, sync_fresh, sync_pair};
use mc_crdt::Json;
use mc_crdt::{Error, KnowledgeBase, SyncSession};
use serde_json::json;

#[test]
fn two_replicas_converge_and_report_in_sync() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    for i in 0..10 {
        a.put(&format!("a{i}"), &Json::from(json!(i)), "a", i)
            .unwrap();
        b.put(&format!("b{i}"), &Json::from(json!(i)), "b", i)
            .unwrap();
    }
    let (mut sa, mut sb) = (SyncSession::new(), SyncSession::new());
    assert!(!sa.in_sync_with(&mut a));
    assert_eq!(sa.peer_heads(), None);
    let messages = sync_pair(&mut a, &mut sa, &mut b, &mut sb);
    assert!(messages >= 2);
    assert_eq!(a.heads(), b.heads());
    assert_eq!(a.list("").unwrap(), b.list("").unwrap());
    assert_eq!(a.len(), 20);
    assert!(sa.in_sync_with(&mut a));
    assert!(sb.in_sync_with(&mut b));
    assert_eq!(sa.peer_heads(), Some(a.heads()));

    // A local write puts the session out of sync until the next exchange.
    a.put("new", &Json::from(json!(true)), "a", 99).unwrap();
    assert!(!sa.in_sync_with(&mut a));
    sync_pair(&mut a, &mut sa, &mut b, &mut sb);
    assert!(sa.in_sync_with(&mut a) && sb.in_sync_with(&mut b));
    assert_eq!(b.get("new").unwrap().unwrap().value, json!(true));

    // Nothing left to say.
    assert_eq!(a.generate_sync_message(&mut sa), None);
    assert_eq!(b.generate_sync_message(&mut sb), None);
}

#[test]
fn receive_reports_whether_heads_changed() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    a.put("k", &Json::from(json!(1)), "a", 1).unwrap();
    let (mut sa, mut sb) = (SyncSession::new(), SyncSession::new());
    let mut changed = Vec::new();
    loop {
        let mut progressed = false;
        if let Some(msg) = a.generate_sync_message(&mut sa) {
            changed.push(("b", b.receive_sync_message(&mut sb, &msg).unwrap()));
            progressed = true;
        }
        if let Some(msg) = b.generate_sync_message(&mut sb) {
            changed.push(("a", a.receive_sync_message(&mut sa, &msg).unwrap()));
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    assert!(changed.contains(&("b", true)), "{changed:?}");
    assert!(
        !changed.iter().any(|&(side, c)| side == "a" && c),
        "{changed:?}"
    );
}

#[test]
fn lost_message_stalls_until_reset() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    a.put("k", &Json::from(json!(1)), "a", 1).unwrap();
    let mut sa = SyncSession::new();
    let mut sb = SyncSession::new();
    assert!(a.generate_sync_message(&mut sa).is_some()); // lost in transit
    assert_eq!(a.generate_sync_message(&mut sa), None, "waits for a reply");
    // The peer reconnects: both sides start over.
    sa.reset();
    sb.reset();
    sync_pair(&mut a, &mut sa, &mut b, &mut sb);
    assert_eq!(a.heads(), b.heads());
}

#[test]
fn garbage_sync_messages_are_rejected_without_effect() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    a.put("k", &Json::from(json!(1)), "a", 1).unwrap();
    b.put("mine", &Json::from(json!(2)), "b", 1).unwrap();
    let heads = b.heads();
    let mut sb = SyncSession::new();
    for bytes in [&b""[..], b"garbage", &[0x42], &[0x42, 0xff, 0xff]] {
        assert!(matches!(
            b.receive_sync_message(&mut sb, bytes),
            Err(Error::SyncMessage(_))
        ));
        assert_eq!(b.heads(), heads);
    }

    // A well-formed message carrying a corrupted change: first let `a` learn b's heads so
    // that its next message carries changes.
    let mut sa = SyncSession::new();
    let hello = b.generate_sync_message(&mut SyncSession::new()).unwrap();
    a.receive_sync_message(&mut sa, &hello).unwrap();
    let with_changes = a.generate_sync_message(&mut sa).unwrap();
    let mut message = Message::decode(&with_changes).unwrap();
    assert!(!message.changes.is_empty());
    let corrupted: Vec<Vec<u8>> = message
        .changes
        .iter()
        .map(|chunk| {
            let mut chunk = chunk.to_vec();
            chunk.truncate(chunk.len() - 2);
            chunk.extend_from_slice(b"??");
            chunk
        })
        .collect();
    message.changes = corrupted.into();
    let before_session = sb.peer_heads();
    assert!(b.receive_sync_message(&mut sb, &message.encode()).is_err());
    assert_eq!(b.heads(), heads);
    assert_eq!(sb.peer_heads(), before_session, "session untouched");
    assert_eq!(b.get("k").unwrap(), None);

    // The genuine message still works.
    assert!(b.receive_sync_message(&mut sb, &with_changes).unwrap());
    assert_eq!(b.get("k").unwrap().unwrap().value, json!(1));
}

#[test]
fn sync_delivers_changes_queued_from_gossip() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut gossip = Vec::new();
    for i in 0..4 {
        a.put(&format!("k{i}"), &Json::from(json!(i)), "a", i)
            .unwrap();
        gossip.push(a.last_local_change().unwrap());
    }
    let mut b = KnowledgeBase::new(actor(2));
    // b only heard the last two changes: they are queued, missing their dependencies.
    b.apply_changes(&gossip[3]).unwrap();
    b.apply_changes(&gossip[2]).unwrap();
    assert!(b.is_empty());
    sync_fresh(&mut a, &mut b);
    assert_eq!(a.heads(), b.heads());
    assert_eq!(b.len(), 4);
}

#[test]
fn full_document_sync_into_a_fresh_replica() {
    let mut a = KnowledgeBase::new(actor(1));
    for i in 0..200 {
        a.put(&format!("k{i:03}"), &Json::from(json!({"i": i})), "a", i)
            .unwrap();
    }
    let mut b = KnowledgeBase::new(actor(2));
    sync_fresh(&mut a, &mut b);
    assert_eq!(a.heads(), b.heads());
    assert_eq!(b.list("k1").unwrap().len(), 100);
}

/// A probe opening a round with a peer that already holds our heads carries no changes, and
/// a peer that lacks some of ours gets exactly those, whichever side opened the round.
#[test]
fn probes_carry_no_changes_and_still_repair_divergence() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    a.put("first", &Json::from(json!(1)), "a", 1).unwrap();
    let (mut sa, mut sb) = (SyncSession::new(), SyncSession::new());
    sync_pair(&mut a, &mut sa, &mut b, &mut sb);

    // Both write; each change reaches the other side "by gossip".
    a.put("x", &Json::from(json!("a")), "a", 2).unwrap();
    let from_a = a.last_local_change().unwrap();
    b.put("y", &Json::from(json!("b")), "b", 3).unwrap();
    let from_b = b.last_local_change().unwrap();
    b.apply_changes(&from_a).unwrap();
    a.apply_changes(&from_b).unwrap();
    assert_eq!(a.heads(), b.heads());

    let probe = a
        .generate_sync_probe(&mut sa)
        .expect("heads moved: a probe is due");
    let decoded = Message::decode(&probe).unwrap();
    assert!(decoded.changes.is_empty() && decoded.have.is_empty());
    b.receive_sync_message(&mut sb, &probe).unwrap();
    let messages = sync_pair(&mut a, &mut sa, &mut b, &mut sb);
    assert!(
        messages <= 1,
        "equal heads settle in one answer, took {messages}"
    );
    // b answered the probe, so each side knows the other agrees.
    assert!(sa.in_sync_with(&mut a) && sb.in_sync_with(&mut b));

    // Gossip lost a chain of two changes: a probe from either side repairs it.
    for (i, key) in ["p", "q"].iter().enumerate() {
        a.put(key, &Json::from(json!(i)), "a", 10 + i as u64)
            .unwrap();
    }
    for opener_is_a in [true, false] {
        let (mut c, mut d) = (
            KnowledgeBase::load(Some(&a.compact()), [], actor(3)).unwrap(),
            KnowledgeBase::load(Some(&b.compact()), [], actor(4)).unwrap(),
        );
        let (mut sc, mut sd) = (SyncSession::new(), SyncSession::new());
        sync_pair(&mut c, &mut sc, &mut d, &mut sd);
        c.put("late", &Json::from(json!(true)), "c", 20).unwrap();
        if !opener_is_a {
            // The side that lacks the change opens the round: its own heads moved too (its
            // write did reach the other side).
            d.put("d-side", &Json::from(json!(1)), "d", 21).unwrap();
            c.apply_changes(&d.last_local_change().unwrap()).unwrap();
        }
        let (opener, opener_session, other, other_session) = if opener_is_a {
            (&mut c, &mut sc, &mut d, &mut sd)
        } else {
            (&mut d, &mut sd, &mut c, &mut sc)
        };
        let probe = opener.generate_sync_probe(opener_session).unwrap();
        other.receive_sync_message(other_session, &probe).unwrap();
        sync_pair(other, other_session, opener, opener_session);
        assert_eq!(c.heads(), d.heads());
        assert_eq!(d.get("late").unwrap().unwrap().value, json!(true));
    }
}

/// Before the first exchange a probe is a full message, and after a complete exchange with
/// nothing new there is nothing to probe.
#[test]
fn probe_falls_back_and_stays_quiet() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    a.put("k", &Json::from(json!(1)), "a", 1).unwrap();
    let (mut sa, mut sb) = (SyncSession::new(), SyncSession::new());
    let first = a.generate_sync_probe(&mut sa).unwrap();
    assert!(!Message::decode(&first).unwrap().have.is_empty());
    b.receive_sync_message(&mut sb, &first).unwrap();
    sync_pair(&mut a, &mut sa, &mut b, &mut sb);
    assert_eq!(a.generate_sync_probe(&mut sa), None);
    assert_eq!(b.generate_sync_probe(&mut sb), None);
}

#[test]
fn heads_digests_agree_exactly_when_heads_do() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    assert_eq!(a.heads_digest(), b.heads_digest(), "both at genesis");
    a.put("x", &Json::from(json!(1)), "a", 1).unwrap();
    b.put("y", &Json::from(json!(2)), "b", 1).unwrap();
    assert_ne!(a.heads_digest(), b.heads_digest());
    sync_fresh(&mut a, &mut b);
    assert_eq!(a.heads(), b.heads());
    assert_eq!(
        a.heads_digest(),
        b.heads_digest(),
        "two heads, in any order"
    );
}
