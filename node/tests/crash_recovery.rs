//! Real-process tests: a node SIGKILLed right after acknowledging writes
//! keeps every acknowledged write, keeps its identity, and catches up on what
//! the others wrote while it was down.
//!
//! # Layout
//!
//! - `put_many` — sequential acknowledged PUTs, returning the entries.
//! - `has_all` / `assert_has_all` — whether / that a node serves every given
//!   entry unchanged.
//! - `acknowledged_writes_survive_sigkill_and_the_node_catches_up` — the
//!   three-node scenario (A crashes, B writes, A restarts).
//! - `isolated_node_keeps_acknowledged_writes_across_sigkill` — the same
//!   without peers, so no replica can mask lost local writes.

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use anyhow::{Context, Result};
use mc_testnet::{Cluster, ClusterOptions, Entry, NodeClient, wait_until};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const SIGKILL: i32 = 9;

fn options(nodes: usize) -> ClusterOptions {
    ClusterOptions::new(nodes).node_bin(env!("CARGO_BIN_EXE_mc-node"))
}

/// PUTs `count` entries `PREFIX/NN` one after another; each is acknowledged
/// before the next is sent.
async fn put_many(client: &NodeClient, prefix: &str, count: usize) -> Result<Vec<Entry>> {
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("{prefix}/{i:02}");
        let value = json!({"seq": i, "note": format!("{prefix} write {i}")});
        entries.push(
            client
                .put(&key, &value)
                .await
                .with_context(|| format!("PUT {key}"))?,
        );
    }
    Ok(entries)
}

/// Whether `client` serves every one of `entries` unchanged.
async fn has_all(client: &NodeClient, entries: &[Entry]) -> Result<bool> {
    for expected in entries {
        if client.get(&expected.key).await?.as_ref() != Some(expected) {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn assert_has_all(client: &NodeClient, entries: &[Entry], who: &str) -> Result<()> {
    for expected in entries {
        let found = client.get(&expected.key).await?;
        assert_eq!(
            found.as_ref(),
            Some(expected),
            "{who} lost or changed {}",
            expected.key
        );
    }
    Ok(())
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_the_node_catches_up() -> Result<()> {
    let mut cluster = Cluster::start(options(3)).await?;
    cluster.wait_connected(2, TIMEOUT).await?;
    // A is node 1: it bootstraps to node 0, which stays up, so A can rejoin.
    let (a, b) = (1, 2);
    let a_peer_id = cluster.node(a).peer_id().to_owned();
    let a_pid = cluster.node(a).pid();

    // One entry that everybody has, for B to delete while A is down.
    let doomed = json!("to be deleted by B while A is down");
    let doomed_key = "crash/doomed";
    cluster.node(a).client().put(doomed_key, &doomed).await?;
    cluster
        .wait_entry_everywhere(doomed_key, &doomed, TIMEOUT)
        .await?;

    let acked = put_many(cluster.node(a).client(), "crash/a", 20).await?;
    let status = cluster.node_mut(a).kill_hard()?;
    assert_eq!(status.signal(), Some(SIGKILL), "A died of SIGKILL");

    let written_while_down = put_many(cluster.node(b).client(), "crash/b", 8).await?;
    assert!(
        cluster.node(b).client().delete(doomed_key).await?,
        "B deletes an entry"
    );

    let restart = cluster.node_mut(a).restart().await;
    restart.context("restarting A on the same data dir")?;
    let client = cluster.node(a).client();
    assert_eq!(
        cluster.node(a).peer_id(),
        a_peer_id,
        "same identity after restart"
    );
    assert_ne!(cluster.node(a).pid(), a_pid, "a new process");
    assert_eq!(client.status().await?.peer_id, a_peer_id);

    // Every write A acknowledged before the crash is served again at once.
    assert_has_all(client, &acked, "A right after the restart").await?;

    // A catches up on what B wrote while A was down, including the delete.
    wait_until(
        "A to catch up on B's writes and delete",
        TIMEOUT,
        POLL,
        async || {
            Ok(has_all(client, &written_while_down).await?
                && client.get(doomed_key).await?.is_none())
        },
    )
    .await?;
    assert_has_all(client, &acked, "A after catching up").await?;

    // The writes A acknowledged but may not have sent before it died reach
    // the other nodes once A is back.
    for i in [0, b] {
        let client = cluster.node(i).client();
        let what = format!("node {i} to hold all of A's acknowledged writes");
        wait_until(&what, TIMEOUT, POLL, async || has_all(client, &acked).await).await?;
    }
    for (i, stopped) in cluster.stop_all().await?.iter().enumerate() {
        assert!(stopped.is_graceful(), "node {i}: {stopped:?}");
    }
    Ok(())
}

#[tokio::test]
async fn isolated_node_keeps_acknowledged_writes_across_sigkill() -> Result<()> {
    let mut cluster = Cluster::start(options(1)).await?;
    let node = cluster.node_mut(0);
    let peer_id = node.peer_id().to_owned();

    let mut acked = put_many(node.client(), "solo", 25).await?;
    // Overwrite one and delete another: the latest acknowledged state counts.
    let rewritten = node
        .client()
        .put("solo/03", &json!({"seq": 3, "note": "rewritten"}))
        .await?;
    acked[3] = rewritten;
    assert!(node.client().delete("solo/07").await?);
    let gone = acked.remove(7);
    let last = node
        .client()
        .put("solo/last", &json!("written just before the crash"))
        .await?;
    acked.push(last);
    let status = node.kill_hard()?;
    assert_eq!(status.signal(), Some(SIGKILL));

    node.restart().await?;
    assert_eq!(node.peer_id(), peer_id, "same identity after restart");
    assert_has_all(node.client(), &acked, "the restarted node").await?;
    assert_eq!(
        node.client().get(&gone.key).await?,
        None,
        "a delete acknowledged before the crash"
    );
    let listed = node.client().list("solo/").await?;
    assert_eq!(
        listed.len(),
        acked.len(),
        "nothing more, nothing less: {listed:?}"
    );

    // A second crash/restart cycle with no new writes changes nothing.
    let heads = node.client().status().await?.knowledge.heads;
    node.kill_hard()?;
    node.restart().await?;
    assert_eq!(node.client().status().await?.knowledge.heads, heads);
    assert_has_all(node.client(), &acked, "after the second restart").await?;
    assert!(node.stop().await?.is_graceful());
    Ok(())
}
