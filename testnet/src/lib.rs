//! `mc-testnet`: launch many real `mc-node` processes on loopback and measure
//! them.
//!
//! This library is the harness shared by the `mc-testnet` binary (`up`,
//! `bench convergence`) and by the real-process integration tests of the
//! `mc-node` package. Everything here talks to nodes exactly as an operator
//! would: child processes, the `node.json` ready file, POSIX signals sent by
//! pid, and the HTTP API.
//!
//! Nodes always bind port 0 (`--listen /ip4/127.0.0.1/tcp/0 --http
//! 127.0.0.1:0`); the harness reads the chosen addresses back from
//! `DATA_DIR/node.json` and then polls `GET /status` until it answers 200.
//! Child processes are only ever signalled by pid, and only while they are
//! not yet reaped, so a pid can never refer to an unrelated process. Dropping
//! a [`NodeProcess`] (or a [`Cluster`]) SIGKILLs its children.
//!
//! # Layout
//!
//! - `lib.rs` — this overview, re-exports, and the polling helpers
//!   [`wait_until`] / [`wait_for`] (poll a condition with a deadline; never
//!   sleep as synchronisation).
//! - [`launch`] — starting one node: [`locate_node_bin`], [`NodeConfig`] (the
//!   command line), [`NodeInfo`] (`node.json`) and the readiness protocol.
//! - [`node`] — [`NodeProcess`]: one running node; `stop` (SIGTERM, then
//!   SIGKILL after a deadline), `kill_hard` (SIGKILL), `restart` on the same
//!   data dir, `rss_bytes`; dropping it SIGKILLs the child.
//! - [`client`] — [`NodeClient`], a small async reqwest client for the node's
//!   HTTP API, and the wire types ([`Status`], [`Entry`], [`ApiError`]).
//! - [`cluster`] — [`Cluster`]: N nodes in their own data dirs, started in
//!   order with random bootstrap links; the built-in [`REGIONS`] list.
//! - [`mod@bench`] — `bench convergence`: write latency until every node serves a
//!   write, and per-node RSS.
//! - [`load`] — `bench load`: sustained writes into one node, ack latency,
//!   replication lag, entries, data-dir size and RSS per 10-second block.
//! - [`up`] — `mc-testnet up`: start a cluster and keep it running until
//!   Ctrl-C / SIGTERM.
//! - `main.rs` — the thin clap front end of the `mc-testnet` binary.

pub mod bench;
pub mod campaign;
pub mod client;
pub mod cluster;
pub mod launch;
pub mod load;
pub mod node;
pub mod up;

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

pub use client::{
    ApiError, ApiFailure, Entry, KnowledgeStatus, NodeClient, PeerStatus, RawResponse, Status,
};
pub use cluster::{Cluster, ClusterOptions, REGIONS, region_name};
pub use launch::{NodeConfig, NodeInfo, locate_node_bin};
pub use node::{NodeProcess, Stopped};

/// Polls `probe` every `interval` until it yields `Some(value)`, or fails once
/// `timeout` has passed.
///
/// Errors returned by `probe` count as "not yet" (a node may still be
/// starting, a connection may be refused); the last one is reported if the
/// deadline passes. `what` names the awaited condition in that error.
pub async fn wait_for<T, F>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: F,
) -> Result<T>
where
    F: AsyncFnMut() -> Result<Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let last_error = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => None,
            Err(e) => Some(e),
        };
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => bail!(
                    "timed out after {timeout:?} ({attempts} attempts) waiting for {what}; last error: {e:#}"
                ),
                None => {
                    bail!("timed out after {timeout:?} ({attempts} attempts) waiting for {what}")
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls the async condition `cond` every `interval` until it returns
/// `Ok(true)`, or fails once `timeout` has passed (see [`wait_for`]).
pub async fn wait_until<F>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut cond: F,
) -> Result<()>
where
    F: AsyncFnMut() -> Result<bool>,
{
    wait_for(what, timeout, interval, async || {
        Ok(cond().await?.then_some(()))
    })
    .await
}

/// Runs `fut` with a deadline, turning an elapsed deadline into an error that
/// names `what`.
pub async fn with_deadline<T>(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result,
        Err(_) => bail!("timed out after {timeout:?}: {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_for_returns_the_first_ready_value() {
        let mut calls = 0;
        let value = wait_for(
            "third call",
            Duration::from_secs(5),
            Duration::from_millis(1),
            async || {
                calls += 1;
                Ok((calls >= 3).then_some(calls))
            },
        )
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn wait_until_times_out_with_the_last_error() {
        let err = wait_until(
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            async || bail!("connection refused"),
        )
        .await
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("never") && msg.contains("connection refused"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn with_deadline_reports_elapsed_deadlines() {
        let err = with_deadline("slow op", Duration::from_millis(10), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("slow op"));
    }
}
