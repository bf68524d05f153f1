//! Group commit (writes and gossip fed between two drains are one batch)
//! and the move of an unsharded store into the knowledge shards.

use mc_crdt::Json;

use super::*;

/// Writes fed between two drains share one change, one persist and one
/// gossip message; every reply comes after the persist; a read in the batch
/// sees the batch's earlier writes.
#[test]
fn a_batch_of_writes_is_one_change_one_persist_one_broadcast() {
    let mut net = Net::new(&["a", "b"], true);
    net.connect("a", "b");
    let a = NodeId::from("a");
    let changes_before = net.nodes[&a].node.knowledge().len();
    let node = &mut net.nodes.get_mut(&a).unwrap().node;
    for i in 0..10u64 {
        let request = ApiRequest::Put {
            key: format!("k{i}"),
            value: json!(i).into(),
        };
        node.handle(0, Input::Api { id: i, request });
    }
    node.handle(
        0,
        Input::Api {
            id: 10,
            request: ApiRequest::Get { key: "k3".into() },
        },
    );
    node.handle(
        0,
        Input::Api {
            id: 11,
            request: ApiRequest::Delete {
                key: "absent".into(),
            },
        },
    );
    node.handle(
        0,
        Input::Api {
            id: 12,
            request: ApiRequest::Put {
                key: String::new(),
                value: json!(1).into(),
            },
        },
    );
    let mut outputs = Vec::new();
    while let Some(output) = node.poll_output() {
        outputs.push(output);
    }
    let persist_at: Vec<usize> = outputs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| matches!(o, Output::Persist(_)).then_some(i))
        .collect();
    assert_eq!(
        persist_at.len(),
        1,
        "one persist for the batch: {outputs:?}"
    );
    let broadcasts = outputs
        .iter()
        .filter(|o| matches!(o, Output::Broadcast { .. }))
        .count();
    assert_eq!(broadcasts, 1, "one gossip message for the batch");
    let replies: BTreeMap<RequestId, &Result<ApiResponse, ApiError>> = outputs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Output::Reply { id, response } => {
                assert!(i > persist_at[0], "reply {id} before the persist");
                Some((*id, response))
            }
            _ => None,
        })
        .collect();
    assert_eq!(replies.len(), 13);
    assert!(matches!(replies[&10], Ok(ApiResponse::Entry(e)) if e.value == json!(3)));
    assert!(matches!(replies[&11], Err(ApiError::NotFound(_))));
    assert!(matches!(replies[&12], Err(ApiError::InvalidKey(_))));
    let counters = net.nodes[&a].node.counters().clone();
    // The read closed the first ten writes into one change; the delete after
    // it is a second (empty) batch.
    assert_eq!((counters.writes_applied, counters.write_batches), (11, 2));
    assert_eq!(net.nodes[&a].node.knowledge().len(), changes_before + 10);

    // The one gossip message carries all ten writes to the peer.
    for output in outputs {
        if let Output::Broadcast { bytes, .. } = output {
            net.input(
                &NodeId::from("b"),
                Input::Received {
                    from: a.clone(),
                    bytes,
                },
            );
        }
    }
    assert_eq!(net.get("b", "k9"), Some(json!(9)));
    assert_eq!(net.nodes[&NodeId::from("b")].node.knowledge().len(), 10);
}

/// A store written before the knowledge base was sharded: its entries move
/// into the shards with their authors and times, and the old keys go in the
/// same store batch.
#[test]
fn an_unsharded_store_is_moved_into_shards_on_start() {
    let mut old = KnowledgeBase::new(ActorId::from(&b"old-node"[..]));
    for i in 0..50u64 {
        old.put(
            &format!("k{i}"),
            &Json::from(json!(i)),
            "old-author",
            1_000 + i,
        )
        .unwrap();
    }
    let pairs = vec![
        (store::LEGACY_SNAPSHOT_KEY.to_string(), old.compact()),
        (
            format!("{}{:020}", store::LEGACY_CHUNK_PREFIX, 0),
            Vec::new(),
        ),
    ];
    let mut store: BTreeMap<String, Vec<u8>> = pairs.iter().cloned().collect();
    let mut node = Node::new(
        Config::new("r"),
        NodeId::from("a"),
        Restored::from_pairs(pairs),
        3,
        0,
    )
    .unwrap();
    let entry = node.knowledge().get("k7").unwrap().unwrap();
    assert_eq!(
        (entry.author.as_str(), entry.updated_at_ms),
        ("old-author", 1_007)
    );
    assert_eq!(node.knowledge().len(), 50);
    while let Some(output) = node.poll_output() {
        if let Output::Persist(ops) = output {
            for op in ops {
                match op {
                    StoreOp::Put { key, value } => {
                        store.insert(key, value);
                    }
                    StoreOp::DeletePrefix(prefix) => {
                        store.retain(|k: &String, _| !k.starts_with(&prefix))
                    }
                }
            }
        }
    }
    assert!(
        store.keys().all(|k| k.starts_with(store::DOC_PREFIX)),
        "{:?}",
        store.keys()
    );
    let again = Node::new(
        Config::new("r"),
        NodeId::from("a"),
        Restored::from_pairs(store),
        4,
        0,
    )
    .unwrap();
    assert_eq!(again.knowledge().len(), 50);
}
