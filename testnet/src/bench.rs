//! `mc-testnet bench convergence`: how long a write takes to reach every
//! node.
//!
//! For each of W writes: PUT a fresh key on a randomly chosen node and note
//! the instant the acknowledgement arrives; then poll `GET` on every node
//! concurrently (about 1 ms between polls per node) until all of them serve
//! the value. The write's convergence latency is the time from the ack until
//! the last node serves it. RSS of every node is sampled once the cluster is
//! connected (idle, before the writes) and again right after the writes.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::json;

use crate::client::NodeClient;
use crate::cluster::{Cluster, ClusterOptions};
use crate::with_deadline;

/// Parameters of one convergence run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub cluster: ClusterOptions,
    pub writes: usize,
    /// Seed for the choice of writer nodes (and the bootstrap links); random
    /// when `None`. The seed used is part of the report.
    pub seed: Option<u64>,
    /// Limit for connecting the cluster and for each single write.
    pub timeout: Duration,
    pub json_path: Option<PathBuf>,
}

/// Latency percentiles in milliseconds (nearest-rank).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub median: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for an empty sample.
    pub fn of(samples_ms: &[f64]) -> Option<Self> {
        if samples_ms.is_empty() {
            return None;
        }
        let mut sorted = samples_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let idx = (p / 100.0 * sorted.len() as f64).ceil() as usize;
            sorted[idx.clamp(1, sorted.len()) - 1]
        };
        Some(Self {
            count: sorted.len(),
            min: sorted[0],
            median: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }
}

/// Memory of one node, in MB (10^6 bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRss {
    pub region: String,
    pub peer_id: String,
    pub idle_mb: f64,
    pub after_writes_mb: f64,
}

/// The result of a run, printed and written as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    pub nodes: usize,
    pub writes: usize,
    pub gossip: bool,
    pub sync_interval_ms: Option<u64>,
    pub seed: u64,
    /// From the first spawn until every node was ready.
    pub startup_ms: f64,
    /// From ready until every node had its minimum number of peers.
    pub connect_ms: f64,
    /// Ack until the last node serves the write.
    pub convergence_ms: Summary,
    /// PUT sent until acknowledged.
    pub ack_ms: Summary,
    pub rss: Vec<NodeRss>,
    pub samples_ms: Vec<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rss_mb(cluster: &mut Cluster) -> Result<Vec<f64>> {
    cluster
        .nodes_mut()
        .iter_mut()
        .map(|n| Ok(n.rss_bytes()? as f64 / 1e6))
        .collect()
}

/// Polls `key` on `client` about every millisecond until it serves a value
/// equal to `expected`; returns when it was first seen.
async fn first_seen(
    client: &NodeClient,
    key: &str,
    expected: &serde_json::Value,
) -> Result<Instant> {
    loop {
        if let Some(entry) = client.get(key).await?
            && entry.value == *expected
        {
            return Ok(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs the benchmark, printing progress to stderr; stops the cluster at the
/// end (also on errors, by dropping it).
pub async fn convergence(opts: BenchOptions) -> Result<BenchReport> {
    if opts.cluster.nodes < 2 {
        bail!("convergence needs at least 2 nodes");
    }
    let seed = opts.seed.unwrap_or_else(|| rand::rng().random());
    let n = opts.cluster.nodes;
    let cluster_opts = ClusterOptions {
        seed: Some(seed),
        ..opts.cluster.clone()
    };
    eprintln!("starting {n} nodes (seed {seed})");
    let started = Instant::now();
    let mut cluster = Cluster::start_with_progress(cluster_opts, |i, node| {
        eprintln!(
            "  node {i:>3} {:<24} {} ready",
            node.region(),
            node.peer_id()
        );
    })
    .await?;
    let startup = started.elapsed();
    let min_peers = (n - 1).min(3);
    eprintln!("waiting until every node has >= {min_peers} peers");
    let connecting = Instant::now();
    cluster.wait_connected(min_peers, opts.timeout).await?;
    let connect = connecting.elapsed();
    let idle = rss_mb(&mut cluster)?;

    let clients = cluster.clients();
    let mut rng = StdRng::seed_from_u64(seed);
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut convergence = Vec::with_capacity(opts.writes);
    let mut acks = Vec::with_capacity(opts.writes);
    let step = (opts.writes / 10).max(1);
    for i in 0..opts.writes {
        let writer = rng.random_range(0..n);
        let key = format!("bench/{run}/{i:06}");
        let value =
            json!({ "write": i, "writer": writer, "payload": format!("value {i} of run {run}") });
        let what = format!("write {i} ({key}) on node {writer} to reach every node");
        let (ack_ms, latency_ms) = with_deadline(&what, opts.timeout, async {
            let sent = Instant::now();
            clients[writer]
                .put(&key, &value)
                .await
                .with_context(|| format!("PUT {key} on node {writer}"))?;
            let acked = Instant::now();
            let seen = join_all(clients.iter().map(|c| first_seen(c, &key, &value))).await;
            let mut last = acked;
            for (node, at) in seen.into_iter().enumerate() {
                last = last.max(at.with_context(|| format!("polling node {node} for {key}"))?);
            }
            Ok((ms(acked - sent), ms(last - acked)))
        })
        .await?;
        acks.push(ack_ms);
        convergence.push(latency_ms);
        if (i + 1) % step == 0 || i + 1 == opts.writes {
            let pct = (i + 1) * 100 / opts.writes;
            eprintln!(
                "  {:>3}% {:>6}/{} writes, last convergence {latency_ms:.1} ms",
                pct,
                i + 1,
                opts.writes
            );
        }
    }
    let after = rss_mb(&mut cluster)?;
    let rss = cluster
        .nodes()
        .iter()
        .zip(idle.iter().zip(after))
        .map(|(node, (&idle_mb, after_writes_mb))| NodeRss {
            region: node.region().to_owned(),
            peer_id: node.peer_id().to_owned(),
            idle_mb,
            after_writes_mb,
        })
        .collect();
    let stopped = cluster.stop_all().await?;
    let forced = stopped.iter().filter(|s| !s.is_graceful()).count();
    if forced > 0 {
        eprintln!("warning: {forced} node(s) did not exit cleanly after SIGTERM");
    }
    let empty = || Summary {
        count: 0,
        min: 0.0,
        median: 0.0,
        p90: 0.0,
        p99: 0.0,
        max: 0.0,
        mean: 0.0,
    };
    let report = BenchReport {
        nodes: n,
        writes: opts.writes,
        gossip: opts.cluster.gossip,
        sync_interval_ms: opts.cluster.sync_interval_ms,
        seed,
        startup_ms: ms(startup),
        connect_ms: ms(connect),
        convergence_ms: Summary::of(&convergence).unwrap_or_else(empty),
        ack_ms: Summary::of(&acks).unwrap_or_else(empty),
        rss,
        samples_ms: convergence,
    };
    if let Some(path) = &opts.json_path {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// The human-readable report.
pub fn render(report: &BenchReport) -> String {
    let mut out = String::new();
    let mode = match (report.gossip, report.sync_interval_ms) {
        (true, _) => "gossip".to_owned(),
        (false, Some(ms)) => format!("anti-entropy only, every {ms} ms"),
        (false, None) => "anti-entropy only".to_owned(),
    };
    out += &format!(
        "convergence: {} nodes, {} writes, {mode}, seed {}\n",
        report.nodes, report.writes, report.seed
    );
    out += &format!(
        "start-up {:.0} ms, connected after {:.0} ms more\n",
        report.startup_ms, report.connect_ms
    );
    for (name, s) in [
        ("convergence", &report.convergence_ms),
        ("ack", &report.ack_ms),
    ] {
        out += &format!(
            "{name:<12} median {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  (mean {:.2})\n",
            s.median, s.p90, s.p99, s.max, s.mean
        );
    }
    out += &format!(
        "{:<24} {:<54} {:>9} {:>14}\n",
        "REGION", "PEER ID", "IDLE MB", "AFTER WRITES MB"
    );
    for node in &report.rss {
        out += &format!(
            "{:<24} {:<54} {:>9.1} {:>14.1}\n",
            node.region, node.peer_id, node.idle_mb, node.after_writes_mb
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&samples).unwrap();
        assert_eq!(
            (s.min, s.median, s.p90, s.p99, s.max),
            (1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((s.mean - 50.5).abs() < 1e-9);
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!((one.median, one.p99, one.max), (7.0, 7.0, 7.0));
        assert!(Summary::of(&[]).is_none());
    }
}
