//! Snapshot + incremental persistence, compaction policy, and strict loading.

use mc_crdt::Json;
use mc_crdt::{ActorId, Error, KnowledgeBase};
use serde_json::json;

fn actor(n: u8) -> ActorId {
    ActorId::from([n; 16])
}

/// A knowledge base with a few writes, plus the incrementals saved after each batch.
fn populated() -> (KnowledgeBase, Vec<Vec<u8>>) {
    let mut kb = KnowledgeBase::new(actor(1));
    let mut incrementals = Vec::new();
    kb.put("a", &Json::from(json!(1)), "x", 1).unwrap();
    kb.put("b", &Json::from(json!([1, 2])), "x", 2).unwrap();
    incrementals.push(kb.save_incremental());
    kb.put("c", &Json::from(json!({"n": null})), "y", 3)
        .unwrap();
    incrementals.push(kb.save_incremental());
    kb.delete("a").unwrap();
    incrementals.push(kb.save_incremental());
    (kb, incrementals)
}

fn slices(chunks: &[Vec<u8>]) -> Vec<&[u8]> {
    chunks.iter().map(Vec::as_slice).collect()
}

#[test]
fn incrementals_round_trip() {
    let (mut kb, incrementals) = populated();
    assert!(incrementals.iter().all(|c| !c.is_empty()));
    assert!(kb.save_incremental().is_empty(), "nothing new to save");

    let mut loaded = KnowledgeBase::load(None, slices(&incrementals), actor(2)).unwrap();
    assert_eq!(loaded.heads(), kb.heads());
    assert_eq!(loaded.list("").unwrap(), kb.list("").unwrap());
    assert_eq!(loaded.actor(), &actor(2));
    assert!(
        loaded.save_incremental().is_empty(),
        "load resets the save cursor"
    );
    let stats = loaded.stats();
    assert_eq!(stats.incrementals_since_compaction, 3);
    let total: usize = incrementals.iter().map(Vec::len).sum();
    assert_eq!(stats.saved_bytes, total as u64);

    // Nothing persisted at all: a fresh knowledge base.
    let mut empty = KnowledgeBase::load(None, [], actor(3)).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.heads(), KnowledgeBase::new(actor(4)).heads());
}

#[test]
fn compact_then_load_with_and_without_incrementals() {
    let (mut kb, _) = populated();
    let snapshot = kb.compact();
    let stats = kb.stats();
    assert_eq!(stats.saved_bytes, snapshot.len() as u64);
    assert_eq!(stats.incrementals_since_compaction, 0);
    assert!(kb.save_incremental().is_empty());

    let mut loaded = KnowledgeBase::load(Some(&snapshot), [], actor(2)).unwrap();
    assert_eq!(loaded.heads(), kb.heads());
    assert_eq!(loaded.list("").unwrap(), kb.list("").unwrap());
    assert!(loaded.save_incremental().is_empty());

    kb.put("d", &Json::from(json!("after")), "z", 4).unwrap();
    let inc = kb.save_incremental();
    let mut loaded = KnowledgeBase::load(Some(&snapshot), [inc.as_slice()], actor(2)).unwrap();
    assert_eq!(loaded.heads(), kb.heads());
    assert_eq!(loaded.get("d").unwrap().unwrap().value, json!("after"));
    assert_eq!(
        loaded.stats().saved_bytes,
        (snapshot.len() + inc.len()) as u64
    );
}

#[test]
fn reloaded_replica_keeps_writing_with_its_actor() {
    let (mut kb, incrementals) = populated();
    let mut reloaded = KnowledgeBase::load(None, slices(&incrementals), actor(1)).unwrap();
    reloaded.put("e", &Json::from(json!(5)), "x", 5).unwrap();
    let change = reloaded.last_local_change().unwrap();
    assert!(kb.apply_changes(&change).unwrap());
    assert_eq!(kb.heads(), reloaded.heads());
}

#[test]
fn incrementals_may_overlap_a_snapshot() {
    // A crash between writing a snapshot and deleting old incrementals must not matter.
    let (mut kb, incrementals) = populated();
    let snapshot = kb.compact();
    let loaded = KnowledgeBase::load(Some(&snapshot), slices(&incrementals), actor(2)).unwrap();
    assert_eq!(loaded.list("").unwrap(), kb.list("").unwrap());
}

#[test]
fn compaction_policy() {
    let mut kb = KnowledgeBase::new(actor(1));
    assert!(!kb.needs_compaction());
    kb.set_compaction_threshold(2, u64::MAX);
    for i in 0..3 {
        kb.put("k", &Json::from(json!(i)), "x", i).unwrap();
        kb.save_incremental();
    }
    assert!(kb.needs_compaction());
    kb.compact();
    assert!(!kb.needs_compaction());

    kb.set_compaction_threshold(usize::MAX, 100);
    kb.put("big", &Json::from(json!("x".repeat(200))), "x", 9)
        .unwrap();
    assert!(!kb.needs_compaction(), "only saved bytes count");
    kb.save_incremental();
    assert!(kb.needs_compaction());

    // Thresholds survive a reload through the incremental counters.
    let (_, incrementals) = populated();
    let mut loaded = KnowledgeBase::load(None, slices(&incrementals), actor(2)).unwrap();
    assert!(!loaded.needs_compaction());
    loaded.set_compaction_threshold(2, u64::MAX);
    assert!(loaded.needs_compaction());
}

#[test]
fn corrupt_persistence_is_an_error() {
    let (mut kb, incrementals) = populated();
    let snapshot = kb.compact();

    assert!(matches!(
        KnowledgeBase::load(Some(b"not a snapshot"), [], actor(2)),
        Err(Error::Snapshot(_))
    ));
    assert!(matches!(
        KnowledgeBase::load(Some(&snapshot[..snapshot.len() - 3]), [], actor(2)),
        Err(Error::Snapshot(_))
    ));
    let mut flipped = snapshot.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    assert!(KnowledgeBase::load(Some(&flipped), [], actor(2)).is_err());

    let mut bad = slices(&incrementals);
    let truncated = &incrementals[1][..incrementals[1].len() - 1];
    bad[1] = truncated;
    match KnowledgeBase::load(None, bad, actor(2)) {
        Err(Error::Incremental { index: 1, .. }) => {}
        other => panic!("expected Incremental {{ index: 1 }}, got {other:?}"),
    }
    assert!(matches!(
        KnowledgeBase::load(Some(&snapshot), [b"junk".as_slice()], actor(2)),
        Err(Error::Incremental { index: 0, .. })
    ));
}

/// A gossiped change applied on top of a saved document is saved as exactly the bytes that
/// arrived, and only once; other paths still save what changed.
#[test]
fn gossiped_change_is_saved_once_as_received() {
    let mut writer = KnowledgeBase::new(actor(1));
    let mut reader = KnowledgeBase::new(actor(2));
    let mut chunks = vec![reader.save_incremental()];
    for i in 0..3 {
        writer
            .put(&format!("k{i}"), &Json::from(json!(i)), "w", i)
            .unwrap();
        let change = writer.last_local_change().unwrap();
        assert!(reader.apply_changes(&change).unwrap());
        let saved = reader.save_incremental();
        assert_eq!(saved, change);
        chunks.push(saved);
        assert!(reader.save_incremental().is_empty());
    }
    // A compaction in between: nothing is left to save afterwards.
    writer.put("after", &Json::from(json!(1)), "w", 9).unwrap();
    reader
        .apply_changes(&writer.last_local_change().unwrap())
        .unwrap();
    let snapshot = reader.compact();
    assert!(reader.save_incremental().is_empty());
    // A local write after a gossiped one, before saving: both are saved.
    writer.put("g", &Json::from(json!(1)), "w", 10).unwrap();
    reader
        .apply_changes(&writer.last_local_change().unwrap())
        .unwrap();
    reader.put("local", &Json::from(json!(2)), "r", 11).unwrap();
    let both = reader.save_incremental();
    let loaded = KnowledgeBase::load(Some(&snapshot), [both.as_slice()], actor(3)).unwrap();
    assert_eq!(loaded.list("").unwrap(), reader.list("").unwrap());
    let loaded = KnowledgeBase::load(None, slices(&chunks), actor(4)).unwrap();
    assert_eq!(loaded.len(), 3);
}
