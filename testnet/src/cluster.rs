//! A cluster of real nodes on loopback.
//!
//! Node 0 starts first with no bootstrap peers. Every later node `i`
//! bootstraps to node 0 plus up to [`ClusterOptions::extra_bootstrap`]
//! randomly chosen nodes among `1..i`, and is started only after the nodes it
//! names are ready. Each node has its own data dir `BASE/node-NN-REGION`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::join_all;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use serde_json::Value;
use tempfile::TempDir;

use crate::client::{Entry, NodeClient, Status};
use crate::launch::{NodeConfig, locate_node_bin};
use crate::node::{NodeProcess, Stopped};
use crate::{wait_for, wait_until};

/// Real cloud region names; node `i` gets `REGIONS[i % len]`, with `-2`,
/// `-3`, … appended once the list wraps.
pub const REGIONS: &[&str] = &[
    "us-east",
    "eu-west",
    "ap-southeast",
    "us-west",
    "eu-central",
    "ap-northeast",
    "sa-east",
    "ca-central",
    "af-south",
    "me-central",
    "ap-south",
    "eu-north",
    "ap-east",
    "eu-south",
    "me-south",
    "il-central",
    "mx-central",
    "ca-west",
    "us-central",
    "asia-east",
    "australia-southeast",
    "northamerica-northeast",
];

/// The region of node `index`.
pub fn region_name(index: usize) -> String {
    let base = REGIONS[index % REGIONS.len()];
    match index / REGIONS.len() {
        0 => base.to_owned(),
        round => format!("{base}-{}", round + 1),
    }
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: usize,
    /// Where the data dirs go; a temporary dir (removed on drop) when `None`.
    pub base_dir: Option<PathBuf>,
    /// The `mc-node` binary; see [`locate_node_bin`] when `None`.
    pub node_bin: Option<PathBuf>,
    pub gossip: bool,
    pub sync_interval_ms: Option<u64>,
    /// Random bootstrap peers per node besides node 0.
    pub extra_bootstrap: usize,
    /// Seed for the bootstrap choices; random when `None`.
    pub seed: Option<u64>,
    pub log_format: Option<String>,
    /// Start-up limit per node.
    pub ready_timeout: Duration,
    /// The admin token every node accepts (`MC_ADMIN_TOKEN`); random by default.
    pub admin_token: String,
}

impl ClusterOptions {
    pub fn new(nodes: usize) -> Self {
        Self {
            nodes,
            base_dir: None,
            node_bin: None,
            gossip: true,
            sync_interval_ms: None,
            extra_bootstrap: 2,
            seed: None,
            log_format: None,
            ready_timeout: Duration::from_secs(60),
            admin_token: crate::client::random_token(),
        }
    }

    pub fn node_bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.node_bin = Some(bin.into());
        self
    }

    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Pass `--no-gossip`, so only anti-entropy sync replicates.
    pub fn no_gossip(mut self) -> Self {
        self.gossip = false;
        self
    }

    pub fn sync_interval_ms(mut self, ms: u64) -> Self {
        self.sync_interval_ms = Some(ms);
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

#[derive(Debug)]
enum BaseDir {
    Temp(TempDir),
    Kept(PathBuf),
}

/// Running nodes plus their base directory. Dropping it SIGKILLs the nodes
/// and then removes a temporary base dir (set `MC_TESTNET_KEEP=1` to keep it
/// for post-mortems).
#[derive(Debug)]
pub struct Cluster {
    // Declared before `base` so the nodes die before their dirs are removed.
    nodes: Vec<NodeProcess>,
    base: BaseDir,
    admin_token: String,
}

impl Cluster {
    /// Starts the cluster and waits until every node answers `/status`.
    pub async fn start(opts: ClusterOptions) -> Result<Self> {
        Self::start_with_progress(opts, |_, _| {}).await
    }

    /// Like [`start`](Self::start), calling `on_ready(index, node)` as each
    /// node becomes ready.
    pub async fn start_with_progress(
        opts: ClusterOptions,
        mut on_ready: impl FnMut(usize, &NodeProcess),
    ) -> Result<Self> {
        let bin = locate_node_bin(opts.node_bin.as_deref())?;
        let base = match &opts.base_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                BaseDir::Kept(dir.clone())
            }
            None => {
                let mut dir = tempfile::Builder::new()
                    .prefix("mc-testnet-")
                    .tempdir()
                    .context("creating a temp dir")?;
                dir.disable_cleanup(std::env::var_os("MC_TESTNET_KEEP").is_some());
                BaseDir::Temp(dir)
            }
        };
        let mut rng = match opts.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => rand::make_rng(),
        };
        let mut cluster = Self {
            nodes: Vec::with_capacity(opts.nodes),
            base,
            admin_token: opts.admin_token.clone(),
        };
        for index in 0..opts.nodes {
            let region = region_name(index);
            let mut config = NodeConfig::new(
                &region,
                cluster.base_dir().join(format!("node-{index:02}-{region}")),
            );
            config.gossip = opts.gossip;
            config.sync_interval_ms = opts.sync_interval_ms;
            config.log_format = opts.log_format.clone();
            config.ready_timeout = opts.ready_timeout;
            config.admin_token = Some(opts.admin_token.clone());
            if index > 0 {
                config.bootstrap.push(cluster.nodes[0].p2p_addr());
                let extra = (1..index).sample(&mut rng, opts.extra_bootstrap);
                config
                    .bootstrap
                    .extend(extra.into_iter().map(|i| cluster.nodes[i].p2p_addr()));
            }
            let node = NodeProcess::start(&bin, config)
                .await
                .with_context(|| format!("starting node {index}"))?;
            on_ready(index, &node);
            cluster.nodes.push(node);
        }
        Ok(cluster)
    }

    /// The admin token every node of the cluster accepts.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A reqwest client that sends the admin token on every request.
    pub fn http(&self) -> Result<reqwest::Client> {
        crate::client::authed_http(&self.admin_token)
    }

    pub fn base_dir(&self) -> &Path {
        match &self.base {
            BaseDir::Temp(dir) => dir.path(),
            BaseDir::Kept(dir) => dir,
        }
    }

    pub fn nodes(&self) -> &[NodeProcess] {
        &self.nodes
    }

    pub fn nodes_mut(&mut self) -> &mut [NodeProcess] {
        &mut self.nodes
    }

    pub fn node(&self, index: usize) -> &NodeProcess {
        &self.nodes[index]
    }

    pub fn node_mut(&mut self, index: usize) -> &mut NodeProcess {
        &mut self.nodes[index]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// One client per node, in node order.
    pub fn clients(&self) -> Vec<NodeClient> {
        self.nodes.iter().map(|n| n.client().clone()).collect()
    }

    /// `GET /status` on every node, concurrently.
    pub async fn statuses(&self) -> Result<Vec<Status>> {
        let all = join_all(self.nodes.iter().map(|n| n.client().status())).await;
        all.into_iter()
            .enumerate()
            .map(|(i, s)| s.with_context(|| format!("status of node {i}")))
            .collect()
    }

    /// Polls until every node lists at least `min_peers` peers in `/status`.
    pub async fn wait_connected(&self, min_peers: usize, timeout: Duration) -> Result<()> {
        let what = format!("every node to have >= {min_peers} peers");
        let mut counts = Vec::new();
        let result = wait_until(&what, timeout, Duration::from_millis(100), async || {
            let statuses = self.statuses().await?;
            counts = statuses.iter().map(|s| s.peers.len()).collect();
            Ok(counts.iter().all(|&c| c >= min_peers))
        })
        .await;
        result.with_context(|| format!("peer counts per node: {counts:?}"))
    }

    /// Polls until every node serves `key` with `value`; returns the entries.
    pub async fn wait_entry_everywhere(
        &self,
        key: &str,
        value: &Value,
        timeout: Duration,
    ) -> Result<Vec<Entry>> {
        let what = format!("every node to serve {key} = {value}");
        wait_for(&what, timeout, Duration::from_millis(20), async || {
            let found = join_all(self.nodes.iter().map(|n| n.client().get(key))).await;
            let mut entries = Vec::with_capacity(found.len());
            for entry in found {
                match entry? {
                    Some(entry) if entry.value == *value => entries.push(entry),
                    _ => return Ok(None),
                }
            }
            Ok(Some(entries))
        })
        .await
    }

    /// Polls until no node serves `key`.
    pub async fn wait_absent_everywhere(&self, key: &str, timeout: Duration) -> Result<()> {
        let what = format!("every node to answer 404 for {key}");
        wait_until(&what, timeout, Duration::from_millis(20), async || {
            let found = join_all(self.nodes.iter().map(|n| n.client().get(key))).await;
            let mut absent = true;
            for entry in found {
                absent &= entry?.is_none();
            }
            Ok(absent)
        })
        .await
    }

    /// Stops every node concurrently (SIGTERM, SIGKILL after the deadline).
    pub async fn stop_all(&mut self) -> Result<Vec<Stopped>> {
        let results = join_all(self.nodes.iter_mut().map(|n| n.stop())).await;
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.with_context(|| format!("stopping node {i}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_distinct_and_wrap_with_a_suffix() {
        assert!(REGIONS.len() >= 20);
        let mut sorted = REGIONS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), REGIONS.len());
        assert_eq!(region_name(0), "us-east");
        assert_eq!(region_name(REGIONS.len()), "us-east-2");
        assert_eq!(region_name(2 * REGIONS.len() + 1), "eu-west-3");
    }
}
