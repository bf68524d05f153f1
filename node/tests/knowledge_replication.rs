//! Real-process tests: knowledge written on one node of a three-node cluster
//! reaches every node, deletions propagate, and prefix listings agree.
//!
//! # Layout
//!
//! - `common::three_nodes` — starts three `mc-node` processes (each in its own temp
//!   data dir) through the `mc_testnet` harness and waits for a full mesh.
//! - one `#[tokio::test]` per property: replication of value and author,
//!   propagation of a delete, prefix listing on every node, peers in
//!   `/status`.
//!
//! Every wait polls a condition with a deadline; nodes are stopped with
//! SIGTERM at the end (and SIGKILLed by the harness if a test fails).

use std::collections::BTreeSet;
use std::time::Duration;

mod common;
use common::three_nodes;

use anyhow::Result;
use mc_testnet::{Cluster, Entry, wait_until};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// Stops every node and checks that each exited by itself with status 0.
async fn stop_gracefully(mut cluster: Cluster) -> Result<()> {
    for (i, stopped) in cluster.stop_all().await?.iter().enumerate() {
        assert!(
            stopped.is_graceful(),
            "node {i} did not shut down cleanly: {stopped:?}"
        );
    }
    Ok(())
}

fn keys(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.key.as_str()).collect()
}

#[tokio::test]
async fn put_on_one_node_is_served_by_every_node_with_the_same_author() -> Result<()> {
    let cluster = three_nodes(TIMEOUT).await?;
    let writer = cluster.node(1);
    let key = "missions/apollo/11";
    let value =
        json!({"vehicle": "Saturn V", "crew": ["Armstrong", "Aldrin", "Collins"], "landed": true});

    let written = writer.client().put(key, &value).await?;
    assert_eq!(written.key, key);
    assert_eq!(written.value, value);
    assert_eq!(
        written.author,
        writer.peer_id(),
        "the author is the writer's peer id"
    );

    let everywhere = cluster.wait_entry_everywhere(key, &value, TIMEOUT).await?;
    for (i, entry) in everywhere.iter().enumerate() {
        assert_eq!(entry, &written, "node {i} serves a different entry");
    }

    // An overwrite from another node replaces value and author everywhere.
    let other = cluster.node(2);
    let newer = json!({"vehicle": "Saturn V", "landed": true, "splashdown": "Pacific"});
    let rewritten = other.client().put(key, &newer).await?;
    assert_eq!(rewritten.author, other.peer_id());
    for (i, entry) in cluster
        .wait_entry_everywhere(key, &newer, TIMEOUT)
        .await?
        .iter()
        .enumerate()
    {
        assert_eq!(entry, &rewritten, "node {i} after the overwrite");
    }
    stop_gracefully(cluster).await
}

#[tokio::test]
async fn delete_on_one_node_removes_the_key_everywhere() -> Result<()> {
    let cluster = three_nodes(TIMEOUT).await?;
    let (doomed, kept) = ("probes/voyager/3", "probes/voyager/1");
    cluster
        .node(0)
        .client()
        .put(doomed, &json!("never launched"))
        .await?;
    cluster
        .node(0)
        .client()
        .put(kept, &json!({"launched": 1977}))
        .await?;
    cluster
        .wait_entry_everywhere(doomed, &json!("never launched"), TIMEOUT)
        .await?;
    cluster
        .wait_entry_everywhere(kept, &json!({"launched": 1977}), TIMEOUT)
        .await?;

    assert!(
        cluster.node(2).client().delete(doomed).await?,
        "first DELETE answers 204"
    );
    cluster.wait_absent_everywhere(doomed, TIMEOUT).await?;
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert!(
            !node.client().delete(doomed).await?,
            "node {i}: a second DELETE answers 404"
        );
        let kept_entry = node.client().get(kept).await?;
        assert_eq!(
            kept_entry.map(|e| e.value),
            Some(json!({"launched": 1977})),
            "node {i} lost {kept}"
        );
    }
    stop_gracefully(cluster).await
}

#[tokio::test]
async fn prefix_listings_agree_on_every_node() -> Result<()> {
    let cluster = three_nodes(TIMEOUT).await?;
    let writes: [(usize, &str, Value); 6] = [
        (0, "fleet/eu-west/2", json!({"status": "standby"})),
        (1, "fleet/eu-west/1", json!({"status": "active"})),
        (2, "fleet/us-east/1", json!({"status": "active"})),
        (0, "fleetwood", json!("not under fleet/")),
        (1, "crew/commander", json!("Ride")),
        (
            2,
            "fleet/eu-west",
            json!("the prefix itself, without the slash"),
        ),
    ];
    for (node, key, value) in &writes {
        cluster.node(*node).client().put(key, value).await?;
    }
    let all: BTreeSet<&str> = writes.iter().map(|(_, k, _)| *k).collect();
    wait_until(
        "every node to list all six keys",
        TIMEOUT,
        POLL,
        async || {
            for node in cluster.nodes() {
                let listed = node.client().list("").await?;
                if keys(&listed).into_iter().collect::<BTreeSet<_>>() != all {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;

    for (i, node) in cluster.nodes().iter().enumerate() {
        let eu = node.client().list("fleet/eu-west/").await?;
        assert_eq!(
            keys(&eu),
            ["fleet/eu-west/1", "fleet/eu-west/2"],
            "node {i}"
        );
        assert_eq!(eu[0].value, json!({"status": "active"}), "node {i}");
        assert_eq!(eu[0].author, cluster.node(1).peer_id(), "node {i}");
        // A prefix is a plain string prefix: "fleet/eu-west" is under "fleet/".
        let fleet = node.client().list("fleet/").await?;
        let expected = [
            "fleet/eu-west",
            "fleet/eu-west/1",
            "fleet/eu-west/2",
            "fleet/us-east/1",
        ];
        assert_eq!(keys(&fleet), expected, "node {i}");
        let everything = node.client().list("").await?;
        let sorted: Vec<&str> = all.iter().copied().collect();
        assert_eq!(
            keys(&everything),
            sorted,
            "node {i}: the full listing is sorted by key"
        );
        assert!(
            node.client().list("nothing-here/").await?.is_empty(),
            "node {i}"
        );
    }
    stop_gracefully(cluster).await
}

#[tokio::test]
async fn status_lists_the_other_nodes_as_peers() -> Result<()> {
    let cluster = three_nodes(TIMEOUT).await?;
    for (i, status) in cluster.statuses().await?.iter().enumerate() {
        let node = cluster.node(i);
        assert_eq!(status.peer_id, node.peer_id());
        assert_eq!(status.region, node.region());
        assert_eq!(status.http_addr, node.info().http_addr);
        assert!(status.gossip_enabled, "gossip is on by default");
        let peers: BTreeSet<&str> = status.peers.iter().map(|p| p.peer_id.as_str()).collect();
        let others: BTreeSet<&str> = cluster
            .nodes()
            .iter()
            .filter(|n| n.peer_id() != node.peer_id())
            .map(|n| n.peer_id())
            .collect();
        assert_eq!(peers, others, "node {i} peers");
    }
    stop_gracefully(cluster).await
}
