//! Real-process tests: concurrent writes on different nodes converge — every
//! node ends up serving the same value and reporting the same CRDT heads.
//!
//! # Layout
//!
//! - `converged` — one poll step: all nodes agree on a set of keys and on
//!   their knowledge heads.
//! - `same_key_written_on_two_nodes_at_once_converges_to_one_value` — the
//!   conflicting-write case, several rounds.
//! - `bursts_of_distinct_keys_from_every_node_converge` — concurrent
//!   non-conflicting writes from all three nodes.

use std::collections::BTreeSet;
use std::time::Duration;

mod common;
use common::three_nodes;

use anyhow::{Context, Result};
use futures::future::try_join_all;
use mc_testnet::{Cluster, Entry, wait_for};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// `Some(entries of node 0)` once every node serves identical entries for
/// `keys` (none missing) and reports identical, non-empty knowledge heads.
async fn converged(cluster: &Cluster, keys: &[String]) -> Result<Option<Vec<Entry>>> {
    let mut first: Option<(Vec<Entry>, BTreeSet<String>)> = None;
    for node in cluster.nodes() {
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            match node.client().get(key).await? {
                Some(entry) => entries.push(entry),
                None => return Ok(None),
            }
        }
        let heads: BTreeSet<String> = node
            .client()
            .status()
            .await?
            .knowledge
            .heads
            .into_iter()
            .collect();
        if heads.is_empty() {
            return Ok(None);
        }
        match &first {
            None => first = Some((entries, heads)),
            Some(seen) if *seen == (entries, heads) => {}
            Some(_) => return Ok(None),
        }
    }
    Ok(first.map(|(entries, _)| entries))
}

#[tokio::test]
async fn same_key_written_on_two_nodes_at_once_converges_to_one_value() -> Result<()> {
    let mut cluster = three_nodes(TIMEOUT).await?;
    let (left, right) = (
        cluster.node(0).client().clone(),
        cluster.node(1).client().clone(),
    );
    let mut keys = Vec::new();
    let mut candidates: Vec<[(Value, String); 2]> = Vec::new();
    for round in 0..5 {
        let key = format!("contested/launch-window/{round}");
        let a = json!({"round": round, "window": "T-10", "from": cluster.node(0).region()});
        let b = json!({"round": round, "window": "T+05", "from": cluster.node(1).region()});
        let (wa, wb) = tokio::join!(left.put(&key, &a), right.put(&key, &b));
        let (wa, wb) = (wa.context("PUT on node 0")?, wb.context("PUT on node 1")?);
        assert_eq!(
            (wa.value, wb.value),
            (a.clone(), b.clone()),
            "each write is acknowledged as sent"
        );
        candidates.push([
            (a, cluster.node(0).peer_id().to_owned()),
            (b, cluster.node(1).peer_id().to_owned()),
        ]);
        keys.push(key);
    }

    let what = "all three nodes to agree on the contested keys and heads";
    let winners = wait_for(what, TIMEOUT, POLL, async || {
        converged(&cluster, &keys).await
    })
    .await?;
    for (entry, options) in winners.iter().zip(&candidates) {
        let won = options.iter().find(|(value, _)| *value == entry.value);
        let (_, author) =
            won.with_context(|| format!("{} holds neither written value: {entry:?}", entry.key))?;
        assert_eq!(
            &entry.author, author,
            "{}: the author belongs to the winning write",
            entry.key
        );
    }

    // The agreement is stable: a later read still sees the same winners.
    let again = converged(&cluster, &keys)
        .await?
        .context("converged state did not persist")?;
    assert_eq!(again, winners);
    for (i, stopped) in cluster.stop_all().await?.iter().enumerate() {
        assert!(stopped.is_graceful(), "node {i}: {stopped:?}");
    }
    Ok(())
}

#[tokio::test]
async fn bursts_of_distinct_keys_from_every_node_converge() -> Result<()> {
    let mut cluster = three_nodes(TIMEOUT).await?;
    let per_node = 10;
    let bursts = cluster.nodes().iter().enumerate().map(|(n, node)| {
        let client = node.client().clone();
        async move {
            let mut written = Vec::with_capacity(per_node);
            for i in 0..per_node {
                let key = format!("telemetry/node-{n}/{i:02}");
                written.push(client.put(&key, &json!({"node": n, "sample": i})).await?);
            }
            anyhow::Ok(written)
        }
    });
    let written: Vec<Entry> = try_join_all(bursts).await?.into_iter().flatten().collect();
    let keys: Vec<String> = written.iter().map(|e| e.key.clone()).collect();

    let what = "all three nodes to hold all 30 telemetry entries with equal heads";
    let entries = wait_for(what, TIMEOUT, POLL, async || {
        converged(&cluster, &keys).await
    })
    .await?;
    assert_eq!(
        entries, written,
        "every node serves exactly what was acknowledged"
    );
    for (i, status) in cluster.statuses().await?.iter().enumerate() {
        assert_eq!(status.knowledge.entries, 30, "node {i} entry count");
    }
    for (i, stopped) in cluster.stop_all().await?.iter().enumerate() {
        assert!(stopped.is_graceful(), "node {i}: {stopped:?}");
    }
    Ok(())
}
