//! Helpers shared by the real-process tests.

use std::time::Duration;

use anyhow::{Context, Result};
use mc_testnet::{Cluster, ClusterOptions};

/// Starts three `mc-node` processes and waits until each sees the other two.
pub async fn three_nodes(timeout: Duration) -> Result<Cluster> {
    let opts = ClusterOptions::new(3).node_bin(env!("CARGO_BIN_EXE_mc-node"));
    let cluster = Cluster::start(opts).await.context("starting 3 nodes")?;
    cluster.wait_connected(2, timeout).await?;
    Ok(cluster)
}
