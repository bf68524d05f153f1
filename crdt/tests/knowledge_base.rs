//! Local reads/writes, gossip application and robustness against malformed input.

mod common;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT, ReadDoc};
use common::{actor, sync_fresh};
use mc_crdt::Json;
use mc_crdt::{Entry, Error, KnowledgeBase, Write};
use serde_json::json;

fn entry(key: &str, value: serde_json::Value, author: &str, t: u64) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
        author: author.into(),
        updated_at_ms: t,
    }
}

/// A raw Automerge peer holding `kb`'s document, to write things this crate never would.
fn raw_peer(kb: &mut KnowledgeBase) -> AutoCommit {
    let mut peer = AutoCommit::new().with_actor(actor(99));
    peer.load_incremental(&kb.compact()).unwrap();
    peer
}

fn raw_change(peer: &mut AutoCommit) -> Vec<u8> {
    peer.commit();
    peer.get_last_local_change().unwrap().raw_bytes().to_vec()
}

#[test]
fn put_get_overwrite_and_delete() {
    let mut kb = KnowledgeBase::new(actor(1));
    assert!(kb.is_empty());
    assert_eq!(kb.get("missing").unwrap(), None);
    kb.put("sat/1", &Json::from(json!({"alt_km": 550})), "houston", 10)
        .unwrap();
    assert_eq!(
        kb.get("sat/1").unwrap(),
        Some(entry("sat/1", json!({"alt_km": 550}), "houston", 10))
    );
    kb.put("sat/1", &Json::from(json!("decayed")), "kourou", 20)
        .unwrap();
    assert_eq!(
        kb.get("sat/1").unwrap(),
        Some(entry("sat/1", json!("decayed"), "kourou", 20))
    );
    assert_eq!(kb.len(), 1);
    assert!(kb.contains_key("sat/1").unwrap());
    assert!(kb.delete("sat/1").unwrap());
    assert!(!kb.delete("sat/1").unwrap());
    assert_eq!(kb.get("sat/1").unwrap(), None);
    assert!(kb.is_empty());
}

#[test]
fn list_filters_by_prefix_and_sorts_by_key() {
    let mut kb = KnowledgeBase::new(actor(1));
    let keys = [
        "b",
        "a/2",
        "a",
        "a/10",
        "ab",
        "a/1",
        "é",
        "z",
        "\u{ffff}",
        "\u{10000}",
        "",
        "A",
    ];
    for (i, key) in keys.iter().enumerate() {
        kb.put(key, &Json::from(json!(i)), "t", i as u64).unwrap();
    }
    let all: Vec<String> = kb.list("").unwrap().into_iter().map(|e| e.key).collect();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(all, expected);
    let a: Vec<String> = kb.list("a/").unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(a, ["a/1", "a/10", "a/2"]);
    let a_all: Vec<String> = kb.list("a").unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(a_all, ["a", "a/1", "a/10", "a/2", "ab"]);
    // Every prefix agrees with a brute-force filter (checks Automerge's key order for the
    // range scan, including characters outside the BMP).
    for prefix in keys
        .iter()
        .chain(&["\u{fff0}", "\u{d7ff}", "a/1", "\u{f0000}"])
    {
        let listed: Vec<String> = kb
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect();
        let brute: Vec<String> = expected
            .iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(listed, brute, "prefix {prefix:?}");
    }
    assert!(kb.list("nothing").unwrap().is_empty());
    assert_eq!(kb.list("é").unwrap()[0].value, json!(6));
}

#[test]
fn heads_and_stats_track_changes() {
    let mut fresh_a = KnowledgeBase::new(actor(1));
    let mut fresh_b = KnowledgeBase::new(actor(2));
    // The shared genesis change: every replica starts with the same single head.
    assert_eq!(fresh_a.heads(), fresh_b.heads());
    assert_eq!(fresh_a.heads().len(), 1);
    let stats = fresh_a.stats();
    assert_eq!(stats.changes, 1);
    assert_eq!(stats.entries, 0);

    fresh_a.put("k", &Json::from(json!(1)), "a", 1).unwrap();
    fresh_b.put("k", &Json::from(json!(2)), "b", 1).unwrap();
    assert_ne!(fresh_a.heads(), fresh_b.heads());
    sync_fresh(&mut fresh_a, &mut fresh_b);
    let heads = fresh_a.heads();
    assert_eq!(heads.len(), 2);
    assert!(heads.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        heads
            .iter()
            .all(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()))
    );
    let stats = fresh_a.stats();
    assert_eq!(stats.changes, 3);
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.heads, heads);
}

#[test]
fn replicas_share_the_entries_map() {
    // Both replicas write different keys before ever talking: without the shared genesis
    // change each would create its own "entries" map and one side's keys would be lost.
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    a.put("from-a", &Json::from(json!(1)), "a", 1).unwrap();
    b.put("from-b", &Json::from(json!(2)), "b", 2).unwrap();
    assert!(a.apply_changes(&b.last_local_change().unwrap()).unwrap());
    assert_eq!(a.len(), 2);
    assert_eq!(a.get("from-b").unwrap().unwrap().author, "b");
}

#[test]
fn concurrent_puts_resolve_to_one_whole_entry() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut b = KnowledgeBase::new(actor(2));
    a.put("k", &Json::from(json!({"x": 1})), "alice", 100)
        .unwrap();
    b.put("k", &Json::from(json!({"y": 2})), "bob", 200)
        .unwrap();
    sync_fresh(&mut a, &mut b);
    let winner = a.get("k").unwrap().unwrap();
    assert_eq!(Some(winner.clone()), b.get("k").unwrap());
    assert!(
        winner == entry("k", json!({"x": 1}), "alice", 100)
            || winner == entry("k", json!({"y": 2}), "bob", 200)
    );
}

#[test]
fn last_local_change_tracks_local_writes_only() {
    let mut a = KnowledgeBase::new(actor(1));
    assert_eq!(a.last_local_change(), None);
    a.put("k", &Json::from(json!(1)), "a", 1).unwrap();
    let first = a.last_local_change().unwrap();
    // Deleting an absent key makes no change.
    assert!(!a.delete("other").unwrap());
    assert_eq!(a.last_local_change().unwrap(), first);

    let mut b = KnowledgeBase::new(actor(2));
    b.apply_changes(&first).unwrap();
    assert_eq!(b.last_local_change(), None, "remote changes are not local");
    assert!(b.delete("k").unwrap());
    assert!(a.apply_changes(&b.last_local_change().unwrap()).unwrap());
    assert_eq!(a.get("k").unwrap(), None);
}

#[test]
fn apply_changes_queues_out_of_order_changes() {
    let mut a = KnowledgeBase::new(actor(1));
    let mut gossip = Vec::new();
    for i in 0..3 {
        a.put(&format!("k{i}"), &Json::from(json!(i)), "a", i)
            .unwrap();
        gossip.push(a.last_local_change().unwrap());
    }
    let mut b = KnowledgeBase::new(actor(2));
    let before = b.heads();
    assert!(!b.apply_changes(&gossip[2]).unwrap());
    assert!(!b.apply_changes(&gossip[1]).unwrap());
    assert_eq!(b.heads(), before, "queued changes are not applied yet");
    assert_eq!(b.get("k2").unwrap(), None);
    assert!(b.apply_changes(&gossip[0]).unwrap());
    assert_eq!(b.heads(), a.heads());
    assert_eq!(b.list("").unwrap(), a.list("").unwrap());
    // Duplicates are harmless.
    assert!(!b.apply_changes(&gossip[1]).unwrap());
    assert!(!b.apply_changes(&[]).unwrap());

    // Several concatenated changes, and a full snapshot, are accepted too.
    let mut c = KnowledgeBase::new(actor(3));
    assert!(c.apply_changes(&gossip.concat()).unwrap());
    assert_eq!(c.heads(), a.heads());
    let mut d = KnowledgeBase::new(actor(4));
    assert!(d.apply_changes(&a.compact()).unwrap());
    assert_eq!(d.heads(), a.heads());
}

#[test]
fn garbage_gossip_is_rejected_without_effect() {
    let mut a = KnowledgeBase::new(actor(1));
    a.put("k", &Json::from(json!(1)), "a", 1).unwrap();
    let good = a.last_local_change().unwrap();
    let mut b = KnowledgeBase::new(actor(2));
    b.put("mine", &Json::from(json!(true)), "b", 1).unwrap();
    let heads = b.heads();
    let listing = b.list("").unwrap();

    let mut with_trailing_garbage = good.clone();
    with_trailing_garbage.extend_from_slice(b"trailing");
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let inputs: [&[u8]; 5] = [
        b"garbage",
        &good[..good.len() / 2],
        &with_trailing_garbage,
        &flipped,
        &[0x85, 0x6f, 0x4a, 0x83],
    ];
    for bytes in inputs {
        assert!(b.apply_changes(bytes).is_err(), "{bytes:?} accepted");
        assert_eq!(b.heads(), heads);
        assert_eq!(b.list("").unwrap(), listing);
    }
    assert!(b.apply_changes(&good).unwrap());
}

#[test]
fn malformed_values_from_a_buggy_peer_do_not_panic() {
    let mut kb = KnowledgeBase::new(actor(1));
    kb.put("good", &Json::from(json!(1)), "a", 1).unwrap();
    let mut peer = raw_peer(&mut kb);
    let (_, entries) = peer.get(ROOT, "entries").unwrap().unwrap();
    peer.put(&entries, "int", 42_i64).unwrap();
    peer.put(&entries, "text", "not json").unwrap();
    peer.put_object(&entries, "object", automerge::ObjType::Map)
        .unwrap();
    assert!(kb.apply_changes(&raw_change(&mut peer)).unwrap());

    for key in ["int", "text", "object"] {
        match kb.get(key) {
            Err(Error::MalformedEntry { key: bad, .. }) => assert_eq!(bad, key),
            other => panic!("{key}: expected MalformedEntry, got {other:?}"),
        }
    }
    let listed: Vec<String> = kb.list("").unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(listed, ["good"], "malformed entries are skipped by list");
    assert_eq!(kb.len(), 4, "len counts every key");
    // A malformed key can still be overwritten or deleted.
    kb.put("int", &Json::from(json!("fixed")), "a", 2).unwrap();
    assert_eq!(kb.get("int").unwrap().unwrap().value, json!("fixed"));
    assert!(kb.delete("text").unwrap());

    // A peer replacing the whole entries map: errors, no panic.
    peer.put(ROOT, "entries", "vandalised").unwrap();
    kb.apply_changes(&raw_change(&mut peer)).unwrap();
    assert!(matches!(kb.get("good"), Err(Error::Layout(_))));
    assert!(matches!(kb.list(""), Err(Error::Layout(_))));
    assert!(matches!(
        kb.put("x", &Json::from(json!(1)), "a", 3),
        Err(Error::Layout(_))
    ));
    assert_eq!(kb.len(), 0);
}

#[test]
fn a_batch_of_writes_is_one_change_that_gossips_whole() {
    let mut a = KnowledgeBase::new(actor(1));
    let before = a.stats().changes;
    let values: Vec<Json> = (0..5).map(|i| Json::from(json!(i))).collect();
    let mut writes: Vec<Write<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, value)| Write::Put {
            key: ["k0", "k1", "k2", "k3", "k4"][i],
            value,
        })
        .collect();
    writes.push(Write::Delete { key: "k1" });
    writes.push(Write::Delete { key: "absent" });
    let changed = a.apply_writes(&writes, "writer", 7).unwrap();
    assert_eq!(changed, [true, true, true, true, true, true, false]);
    assert_eq!(a.stats().changes, before + 1, "the batch is one change");
    assert_eq!(
        a.get("k1").unwrap(),
        None,
        "a later write in the batch wins"
    );
    assert_eq!(a.get("k4").unwrap().unwrap().updated_at_ms, 7);

    // A single put afterwards is a second change; both travel in one gossip payload.
    a.put("k9", &Json::from(json!(9)), "writer", 8).unwrap();
    let gossip = a.take_local_changes();
    assert!(
        a.take_local_changes().is_empty(),
        "changes are handed out once"
    );
    let mut b = KnowledgeBase::new(actor(2));
    assert!(b.apply_changes(&gossip).unwrap());
    let keys: Vec<String> = b.list("").unwrap().into_iter().map(|e| e.key).collect();
    assert_eq!(keys, ["k0", "k2", "k3", "k4", "k9"]);
    // Received changes are not this replica's to publish.
    assert!(b.take_local_changes().is_empty());
}

#[test]
fn a_batch_that_changes_nothing_makes_no_change() {
    let mut a = KnowledgeBase::new(actor(1));
    let heads = a.heads();
    let changed = a
        .apply_writes(&[Write::Delete { key: "absent" }], "w", 1)
        .unwrap();
    assert_eq!(changed, [false]);
    assert_eq!(a.heads(), heads);
    assert!(a.take_local_changes().is_empty());
}
