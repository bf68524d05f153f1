//! `mc-testnet bench load`: sustained write load into one node, and how far
//! the other nodes fall behind.
//!
//! W writer tasks PUT fresh keys into node 0 back to back (each waits for its
//! acknowledgement, which the node sends once the write is durable). A lag
//! sampler repeatedly takes the most recently acknowledged write and polls
//! every other node (every [`LAG_POLL`]) until each serves it: the replication lag of that write
//! is the time from its acknowledgement until the last node serves it. Every
//! 10-second block reports acknowledged writes/s, ack p50/p99, lag p50/p99,
//! entries, data-directory size and RSS per node. A lag sample that has not
//! arrived after [`STALL_AFTER`] counts as a stall. After the load, the run
//! waits until every node holds as many entries as node 0 (catch-up time).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::future::join_all;
use serde::Serialize;
use serde_json::json;

use crate::bench::Summary;
use crate::client::NodeClient;
use crate::cluster::{Cluster, ClusterOptions};

/// Length of one reporting block.
pub const BLOCK: Duration = Duration::from_secs(10);
/// How often the lag sampler asks a replica for the sampled key: the lag's
/// resolution, and the load the measurement adds to each replica (200
/// requests/s while a sample is out).
pub const LAG_POLL: Duration = Duration::from_millis(5);
/// A lag sample still missing after this long is a stall.
pub const STALL_AFTER: Duration = Duration::from_secs(10);

/// Parameters of one load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub cluster: ClusterOptions,
    /// Concurrent writers, all into node 0.
    pub writers: usize,
    /// How long to write.
    pub duration: Duration,
    /// Stop earlier once this many writes are acknowledged.
    pub max_writes: Option<u64>,
    /// Size of the padding string in each value.
    pub value_bytes: usize,
    /// Limit for connecting the cluster and for the final catch-up.
    pub timeout: Duration,
    pub json_path: Option<PathBuf>,
}

/// One node at the end of a block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSample {
    pub region: String,
    pub entries: u64,
    pub data_dir_mb: f64,
    pub rss_mb: f64,
}

/// One 10-second block (the last may be shorter).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Block {
    pub index: usize,
    pub seconds: f64,
    pub acked: u64,
    pub writes_per_s: f64,
    pub ack_ms: Option<Summary>,
    pub lag_ms: Option<Summary>,
    pub stalls: usize,
    pub nodes: Vec<NodeSample>,
}

/// The result of a run, printed and written as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub nodes: usize,
    pub writers: usize,
    pub value_bytes: usize,
    pub duration_s: f64,
    pub acked: u64,
    pub failed: u64,
    pub writes_per_s: f64,
    pub ack_ms: Option<Summary>,
    pub lag_ms: Option<Summary>,
    pub stalls: usize,
    /// From the end of the load until every node held node 0's entries.
    pub catch_up_ms: f64,
    /// Last block's writes/s over the first's.
    pub last_over_first: f64,
    pub blocks: Vec<Block>,
}

/// What the writers and the sampler share.
#[derive(Debug, Default)]
struct Shared {
    /// Ack latencies (ms) since the block started.
    acks: Vec<f64>,
    acked_total: u64,
    failed: u64,
    /// The latest acknowledged key and when.
    latest: Option<(String, Instant)>,
    lags: Vec<f64>,
    stalls: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Bytes under `dir`, recursively (files only).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

async fn writer(
    client: NodeClient,
    shared: Arc<Mutex<Shared>>,
    prefix: String,
    pad: String,
    deadline: Instant,
    max_writes: Option<u64>,
) {
    let mut i = 0u64;
    while Instant::now() < deadline {
        if let Some(max) = max_writes
            && shared.lock().map(|s| s.acked_total >= max).unwrap_or(true)
        {
            return;
        }
        let key = format!("{prefix}/{i:08}");
        let value = json!({ "i": i, "pad": pad });
        let sent = Instant::now();
        let result = client.put(&key, &value).await;
        let acked = Instant::now();
        let Ok(mut s) = shared.lock() else { return };
        match result {
            Ok(_) => {
                s.acks.push(ms(acked - sent));
                s.acked_total += 1;
                s.latest = Some((key, acked));
            }
            Err(error) => {
                s.failed += 1;
                if s.failed <= 3 {
                    eprintln!("  write failed: {error:#}");
                }
            }
        }
        i += 1;
    }
}

/// Takes the latest acknowledged write and polls the replicas until all
/// serve it, over and over until `stop`.
async fn lag_sampler(replicas: Vec<NodeClient>, shared: Arc<Mutex<Shared>>, stop: Instant) {
    let mut last_key = String::new();
    while Instant::now() < stop {
        let latest = shared.lock().ok().and_then(|s| s.latest.clone());
        let Some((key, acked)) = latest.filter(|(k, _)| *k != last_key) else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        last_key = key.clone();
        let seen = join_all(replicas.iter().map(|c| async {
            let give_up = Instant::now() + STALL_AFTER;
            while Instant::now() < give_up {
                if matches!(c.get(&key).await, Ok(Some(_))) {
                    return Some(Instant::now());
                }
                tokio::time::sleep(LAG_POLL).await;
            }
            None
        }))
        .await;
        let Ok(mut s) = shared.lock() else { return };
        match seen.into_iter().collect::<Option<Vec<Instant>>>() {
            Some(times) => {
                let last = times.into_iter().max().unwrap_or(acked);
                s.lags.push(ms(last.saturating_duration_since(acked)));
            }
            None => s.stalls += 1,
        }
    }
}

async fn sample_nodes(cluster: &mut Cluster) -> Vec<NodeSample> {
    let statuses = join_all(
        cluster
            .clients()
            .iter()
            .map(|c| async { c.status().await.ok() }),
    )
    .await;
    cluster
        .nodes_mut()
        .iter_mut()
        .zip(statuses)
        .map(|(node, status)| NodeSample {
            region: node.region().to_owned(),
            entries: status.map_or(0, |s| s.knowledge.entries),
            data_dir_mb: dir_bytes(node.data_dir()) as f64 / 1e6,
            rss_mb: node.rss_bytes().unwrap_or(0) as f64 / 1e6,
        })
        .collect()
}

/// Runs the load, printing each block to stderr as it ends.
pub async fn run(opts: LoadOptions) -> Result<LoadReport> {
    if opts.cluster.nodes < 2 || opts.writers == 0 {
        bail!("bench load needs at least 2 nodes and 1 writer");
    }
    let n = opts.cluster.nodes;
    eprintln!("starting {n} nodes");
    let mut cluster = Cluster::start(opts.cluster.clone()).await?;
    cluster.wait_connected(n - 1, opts.timeout).await?;
    let clients = cluster.clients();
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let shared = Arc::new(Mutex::new(Shared::default()));
    let start = Instant::now();
    let deadline = start + opts.duration;
    let pad = "x".repeat(opts.value_bytes);
    let mut tasks = Vec::new();
    for w in 0..opts.writers {
        tasks.push(tokio::spawn(writer(
            clients[0].clone(),
            shared.clone(),
            format!("load/{run_id}/{w:03}"),
            pad.clone(),
            deadline,
            opts.max_writes,
        )));
    }
    let sampler = tokio::spawn(lag_sampler(clients[1..].to_vec(), shared.clone(), deadline));
    eprintln!(
        "{} writers into {} for {:?}; blocks of {:?}",
        opts.writers,
        cluster.node(0).region(),
        opts.duration,
        BLOCK
    );
    let mut blocks = Vec::new();
    let mut all_acks = Vec::new();
    let mut all_lags = Vec::new();
    let mut block_start = start;
    loop {
        let block_end = (block_start + BLOCK).min(deadline);
        while Instant::now() < block_end && !tasks.iter().all(|t| t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let now = Instant::now();
        let (acks, lags, stalls) = {
            let mut s = shared
                .lock()
                .map_err(|_| anyhow::anyhow!("a writer panicked"))?;
            let stalls = std::mem::take(&mut s.stalls);
            (
                std::mem::take(&mut s.acks),
                std::mem::take(&mut s.lags),
                stalls,
            )
        };
        let seconds = (now - block_start).as_secs_f64();
        let block = Block {
            index: blocks.len(),
            seconds,
            acked: acks.len() as u64,
            writes_per_s: acks.len() as f64 / seconds.max(1e-9),
            ack_ms: Summary::of(&acks),
            lag_ms: Summary::of(&lags),
            stalls,
            nodes: sample_nodes(&mut cluster).await,
        };
        eprintln!("{}", render_block(&block));
        all_acks.extend(acks);
        all_lags.extend(lags);
        blocks.push(block);
        block_start = now;
        if now >= deadline || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    for task in tasks {
        task.await.context("a writer task failed")?;
    }
    sampler.abort();
    let load_end = Instant::now();
    let (acked, failed, stalls) = {
        let s = shared
            .lock()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))?;
        (
            s.acked_total,
            s.failed,
            s.stalls + blocks.iter().map(|b| b.stalls).sum::<usize>(),
        )
    };
    eprintln!("load done; waiting until every node holds node 0's entries");
    let target = clients[0].status().await?.knowledge.entries;
    let caught_up = crate::wait_until(
        "every node to hold node 0's entries",
        opts.timeout,
        Duration::from_millis(20),
        async || {
            let statuses = join_all(clients.iter().map(NodeClient::status)).await;
            Ok(statuses
                .into_iter()
                .all(|s| s.is_ok_and(|s| s.knowledge.entries >= target)))
        },
    )
    .await;
    let catch_up_ms = ms(load_end.elapsed());
    caught_up?;
    let duration_s = (load_end - start).as_secs_f64();
    let first = blocks.first().map_or(0.0, |b| b.writes_per_s);
    let last = blocks
        .iter()
        .rev()
        .find(|b| b.seconds >= BLOCK.as_secs_f64() / 2.0)
        .map_or(0.0, |b| b.writes_per_s);
    let report = LoadReport {
        nodes: n,
        writers: opts.writers,
        value_bytes: opts.value_bytes,
        duration_s,
        acked,
        failed,
        writes_per_s: acked as f64 / duration_s.max(1e-9),
        ack_ms: Summary::of(&all_acks),
        lag_ms: Summary::of(&all_lags),
        stalls,
        catch_up_ms,
        last_over_first: if first > 0.0 { last / first } else { 0.0 },
        blocks,
    };
    cluster.stop_all().await?;
    if let Some(path) = &opts.json_path {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

fn pcts(s: &Option<Summary>) -> String {
    s.as_ref().map_or_else(
        || "-".to_owned(),
        |s| format!("p50 {:.1} p99 {:.1}", s.median, s.p99),
    )
}

fn render_block(b: &Block) -> String {
    let nodes: Vec<String> = b
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{}={}/{:.0}MB/{:.0}MB",
                n.region, n.entries, n.data_dir_mb, n.rss_mb
            )
        })
        .collect();
    format!(
        "  block {:>2} {:>5.1}s {:>8.0} w/s  ack {}  lag {}  stalls {}  entries/dir/rss {}",
        b.index,
        b.seconds,
        b.writes_per_s,
        pcts(&b.ack_ms),
        pcts(&b.lag_ms),
        b.stalls,
        nodes.join(" ")
    )
}

/// The human-readable summary.
pub fn render(r: &LoadReport) -> String {
    format!(
        "load: {} nodes, {} writers into node 0, values of {} bytes, {:.1} s\n\
         acknowledged {} writes ({} failed): {:.0} writes/s; last block / first {:.2}\n\
         ack ms {}; replication lag ms {}; stalls {}; catch-up {:.0} ms after the load\n",
        r.nodes,
        r.writers,
        r.value_bytes,
        r.duration_s,
        r.acked,
        r.failed,
        r.writes_per_s,
        r.last_over_first,
        pcts(&r.ack_ms),
        pcts(&r.lag_ms),
        r.stalls,
        r.catch_up_ms,
    )
}
