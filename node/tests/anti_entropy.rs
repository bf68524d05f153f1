//! Real-process tests of anti-entropy alone: nodes started with
//! `--no-gossip --sync-interval-ms 300` still replicate every change, by
//! periodic sync, including to a node that was down when the change was
//! made.
//!
//! # Layout
//!
//! - `no_gossip_cluster` — three nodes with gossip off and a 300 ms sync
//!   interval, connected in a full mesh.
//! - `puts_and_deletes_reach_every_node_without_gossip` — replication of a
//!   PUT and of a DELETE, and `gossip_enabled: false` in `/status`.
//! - `peers_report_sync_state` — `/status` peers get a `last_sync_ms` and
//!   `in_sync` once the documents match.
//! - `a_restarted_node_is_brought_up_to_date_by_sync` — writes made while a
//!   node was stopped reach it after it restarts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mc_testnet::{Cluster, ClusterOptions, wait_until};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);
const SYNC_INTERVAL_MS: u64 = 300;

async fn no_gossip_cluster() -> Result<Cluster> {
    let opts = ClusterOptions::new(3)
        .node_bin(env!("CARGO_BIN_EXE_mc-node"))
        .no_gossip()
        .sync_interval_ms(SYNC_INTERVAL_MS);
    let cluster = Cluster::start(opts)
        .await
        .context("starting 3 nodes without gossip")?;
    cluster.wait_connected(2, TIMEOUT).await?;
    Ok(cluster)
}

async fn stop_gracefully(mut cluster: Cluster) -> Result<()> {
    for (i, stopped) in cluster.stop_all().await?.iter().enumerate() {
        assert!(stopped.is_graceful(), "node {i}: {stopped:?}");
    }
    Ok(())
}

fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

#[tokio::test]
async fn puts_and_deletes_reach_every_node_without_gossip() -> Result<()> {
    let cluster = no_gossip_cluster().await?;
    for (i, status) in cluster.statuses().await?.iter().enumerate() {
        assert!(
            !status.gossip_enabled,
            "node {i} reports gossip enabled despite --no-gossip"
        );
    }
    let key = "weather/cape-canaveral";
    let value = json!({"wind_kts": 12, "go": true});
    let written = cluster.node(0).client().put(key, &value).await?;
    for (i, entry) in cluster
        .wait_entry_everywhere(key, &value, TIMEOUT)
        .await?
        .iter()
        .enumerate()
    {
        assert_eq!(entry, &written, "node {i}");
    }

    let other = "weather/baikonur";
    cluster
        .node(1)
        .client()
        .put(other, &json!({"wind_kts": 30, "go": false}))
        .await?;
    assert!(
        cluster.node(2).client().delete(key).await?,
        "DELETE on node 2"
    );
    cluster.wait_absent_everywhere(key, TIMEOUT).await?;
    cluster
        .wait_entry_everywhere(other, &json!({"wind_kts": 30, "go": false}), TIMEOUT)
        .await?;
    stop_gracefully(cluster).await
}

#[tokio::test]
async fn peers_report_sync_state() -> Result<()> {
    let cluster = no_gossip_cluster().await?;
    let before = now_ms();
    cluster
        .node(2)
        .client()
        .put("crew/pilot", &json!("Tereshkova"))
        .await?;
    cluster
        .wait_entry_everywhere("crew/pilot", &json!("Tereshkova"), TIMEOUT)
        .await?;

    // After a few sync rounds every peer entry is in sync with a recent sync
    // time, and every node reports the same heads.
    // What the nodes said last, so that a timeout shows which condition failed.
    let mut last_seen = String::new();
    wait_until(
        "every peer to be in sync after a recent sync",
        TIMEOUT,
        POLL,
        async || {
            let statuses = cluster.statuses().await?;
            last_seen = statuses
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let peers: Vec<String> = s
                        .peers
                        .iter()
                        .map(|p| format!("in_sync {} last_sync_ms {:?}", p.in_sync, p.last_sync_ms))
                        .collect();
                    format!(
                        "node {i}: heads {:?}; peers [{}]",
                        s.knowledge.heads,
                        peers.join("; ")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            let heads = &statuses[0].knowledge.heads;
            Ok(statuses.iter().all(|s| {
                s.knowledge.heads == *heads
                    && s.peers.len() == 2
                    && s.peers
                        .iter()
                        .all(|p| p.in_sync && p.last_sync_ms.is_some_and(|t| t >= before))
            }))
        },
    )
    .await
    .with_context(|| format!("last statuses (written at {before}):\n{last_seen}"))?;
    for (i, status) in cluster.statuses().await?.iter().enumerate() {
        for peer in &status.peers {
            let t = peer.last_sync_ms.context("last_sync_ms vanished")?;
            assert!(
                t <= now_ms() + 1_000,
                "node {i}: last_sync_ms {t} lies in the future"
            );
        }
    }
    stop_gracefully(cluster).await
}

#[tokio::test]
async fn a_restarted_node_is_brought_up_to_date_by_sync() -> Result<()> {
    let mut cluster = no_gossip_cluster().await?;
    let stopped = cluster.node_mut(2).stop().await?;
    assert!(stopped.is_graceful(), "{stopped:?}");

    let mut written = Vec::new();
    for i in 0..5 {
        let key = format!("countdown/{i}");
        written.push(
            cluster
                .node(i % 2)
                .client()
                .put(&key, &json!({"t_minus": 5 - i}))
                .await?,
        );
    }
    cluster.node_mut(2).restart().await?;
    let late = cluster.node(2).client().clone();
    wait_until(
        "the restarted node to receive all five writes by sync",
        TIMEOUT,
        POLL,
        async || {
            for expected in &written {
                if late.get(&expected.key).await?.as_ref() != Some(expected) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    assert_eq!(
        late.list("countdown/").await?,
        written,
        "exactly the five writes, sorted by key"
    );
    stop_gracefully(cluster).await
}
