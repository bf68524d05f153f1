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

/// The admin token of a kept base dir: the one in `DIR/admin.token` from an
/// earlier `up`, else `fresh`, written there (mode 0600) for the next one.
pub fn kept_token(dir: &std::path::Path, fresh: &str) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut file, format!("{fresh}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(fresh.to_owned())
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
    println!(
        "admin token (every node; send `Authorization: Bearer TOKEN`): {}\n\
         e.g. curl -H 'Authorization: Bearer {}' {}",
        cluster.admin_token(),
        cluster.admin_token(),
        cluster.node(0).status_url()
    );
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
