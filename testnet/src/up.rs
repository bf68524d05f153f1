//! `mc-testnet up`: start a cluster, print where to reach it, and keep it
//! running until Ctrl-C or SIGTERM.
//!
//! Signals are watched from the very beginning: one that arrives while nodes
//! are still starting drops the half-built cluster (its nodes are SIGKILLed
//! by pid). After start-up, a signal stops every node with SIGTERM (SIGKILL
//! after a deadline). Nodes that exit on their own while the cluster is up
//! are reported once each.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cluster::{Cluster, ClusterOptions};
use crate::node::NodeProcess;

/// How often `up` checks whether a child has exited by itself.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// SIGINT and SIGTERM handlers, installed as soon as this is created.
#[derive(Debug)]
struct Shutdown {
    int: Signal,
    term: Signal,
}

impl Shutdown {
    fn install() -> Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM and names it (cancel-safe).
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// One table row per node: region, peer id, status URL.
pub fn render_table(nodes: &[NodeProcess]) -> String {
    let mut out = format!(
        "{:>4}  {:<24} {:<54} {}\n",
        "#", "REGION", "PEER ID", "STATUS"
    );
    for (i, node) in nodes.iter().enumerate() {
        out += &format!(
            "{i:>4}  {:<24} {:<54} {}\n",
            node.region(),
            node.peer_id(),
            node.status_url()
        );
    }
    out
}

/// Runs `mc-testnet up` until a signal arrives.
pub async fn run(opts: ClusterOptions) -> Result<()> {
    // Install the handlers first so an early Ctrl-C is caught, not fatal.
    let mut shutdown = Shutdown::install()?;
    let total = opts.nodes;
    match &opts.base_dir {
        Some(dir) => eprintln!(
            "starting {total} nodes under {} (data persists)",
            dir.display()
        ),
        None => eprintln!("starting {total} nodes in a temporary directory"),
    }
    let start = Cluster::start_with_progress(opts, |i, node| {
        eprintln!(
            "[{:>3}/{total}] {:<24} {} at {}",
            i + 1,
            node.region(),
            node.peer_id(),
            node.http_url()
        );
    });
    let mut cluster = tokio::select! {
        cluster = start => cluster?,
        sig = shutdown.recv() => {
            eprintln!("{sig} during start-up; killing the nodes started so far");
            return Ok(());
        }
    };
    println!("{}", render_table(cluster.nodes()));
    eprintln!(
        "{total} nodes up (base dir {}); Ctrl-C to stop",
        cluster.base_dir().display()
    );

    let mut reported = vec![false; cluster.len()];
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    let sig = loop {
        tokio::select! {
            sig = shutdown.recv() => break sig,
            _ = watch.tick() => report_exits(&mut cluster, &mut reported),
        }
    };
    eprintln!("{sig}: stopping {total} nodes");
    let stopped = cluster.stop_all().await?;
    for (node, how) in cluster.nodes().iter().zip(&stopped) {
        let manner = if how.already_exited {
            "had already exited"
        } else if how.forced {
            "killed after the SIGTERM deadline"
        } else {
            "stopped"
        };
        eprintln!("  {:<24} {manner} ({})", node.region(), how.status);
    }
    Ok(())
}

fn report_exits(cluster: &mut Cluster, reported: &mut [bool]) {
    for (i, node) in cluster.nodes_mut().iter_mut().enumerate() {
        if reported[i] {
            continue;
        }
        match node.exit_status() {
            Ok(Some(status)) => {
                reported[i] = true;
                eprintln!(
                    "warning: node {i} ({}) exited by itself with {status}; log: {}",
                    node.region(),
                    node.log_path().display()
                );
            }
            Ok(None) => {}
            Err(e) => {
                reported[i] = true;
                eprintln!("warning: cannot check node {i}: {e:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_has_a_header() {
        let table = render_table(&[]);
        assert!(table.contains("REGION") && table.contains("PEER ID") && table.contains("STATUS"));
        assert_eq!(table.lines().count(), 1);
    }
}
