//! `mc-testnet`: launch and measure many real `mc-node` processes on
//! loopback.
//!
//! # Layout
//!
//! This file is only the command line (clap) and its dispatch; the work is
//! done by the `mc_testnet` library: `mc_testnet::up::run` for `up` and
//! `mc_testnet::bench::convergence` for `bench convergence`.
//!
//! ```text
//! mc-testnet up --nodes 5 [--base-dir DIR] [--no-gossip] [--sync-interval-ms N] [--node-bin PATH]
//! mc-testnet bench convergence --nodes N --writes W [--json PATH] [--no-gossip]
//!                              [--sync-interval-ms N] [--seed S] [--node-bin PATH]
//! mc-testnet bench load --nodes N --writers W --duration S [--value-bytes B]
//!                       [--max-writes M] [--json PATH] [--node-bin PATH]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use mc_testnet::ClusterOptions;
use mc_testnet::bench::{self, BenchOptions};
use mc_testnet::{campaign, load};

#[derive(Debug, Parser)]
#[command(
    name = "mc-testnet",
    version,
    about = "Launch and measure real mc-node processes on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a cluster and keep it running until Ctrl-C / SIGTERM.
    Up {
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Keep the node data dirs here (persisting between runs) instead of
        /// a temporary directory.
        #[arg(long)]
        base_dir: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Latency from a write's acknowledgement until every node serves it.
    Convergence {
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        #[arg(long, default_value_t = 100)]
        writes: usize,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Seed for the choice of writer nodes and bootstrap links.
        #[arg(long)]
        seed: Option<u64>,
        /// Limit (seconds) for connecting the cluster and for each write.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Sustained writes into node 0: writes/s, ack and replication-lag
    /// percentiles, entries, data-dir size and RSS, per 10-second block.
    Load {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Concurrent writers (each waits for its acknowledgement).
        #[arg(long, default_value_t = 16)]
        writers: usize,
        /// Seconds of load.
        #[arg(long, default_value_t = 60)]
        duration: u64,
        /// Stop once this many writes are acknowledged.
        #[arg(long)]
        max_writes: Option<u64>,
        /// Padding bytes in each written value.
        #[arg(long, default_value_t = 64)]
        value_bytes: usize,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Limit (seconds) for connecting the cluster and for the catch-up.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// A federated campaign on real nodes: wall time from creation to the
    /// last node's completion, round times, one model, RSS.
    Campaign {
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        #[arg(long, default_value_t = 40)]
        rounds: u32,
        #[arg(long, default_value_t = 5)]
        local_epochs: u32,
        #[arg(long, default_value_t = 16)]
        batch_size: u32,
        #[arg(long, default_value_t = 0.001)]
        learning_rate: f64,
        /// fedavg, median, trimmed-mean or multi-krum.
        #[arg(long, default_value = "fedavg")]
        aggregation: String,
        /// on or off; the rule's default when absent.
        #[arg(long)]
        drift_correction: Option<OnOff>,
        /// Hidden layers of the synthetic model, e.g. 32,32.
        #[arg(long, value_delimiter = ',', default_value = "32,32")]
        hidden: Vec<u32>,
        /// Synthetic rows per node (at most).
        #[arg(long, default_value_t = 400)]
        rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One CSV per node plus schema.json, instead of synthetic data.
        #[arg(long)]
        csv_dir: Option<PathBuf>,
        #[arg(long, default_value_t = 60.0)]
        round_deadline_s: f64,
        /// Limit (seconds) for connecting and for the whole campaign.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// A switch given as `on` or `off`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// Options passed through to every node.
#[derive(Debug, Args)]
struct NodeArgs {
    /// Start the nodes with --no-gossip (anti-entropy sync only).
    #[arg(long)]
    no_gossip: bool,
    /// The nodes' anti-entropy sync interval.
    #[arg(long)]
    sync_interval_ms: Option<u64>,
    /// The mc-node binary (default: $MC_NODE_BIN, else next to mc-testnet).
    #[arg(long)]
    node_bin: Option<PathBuf>,
}

impl NodeArgs {
    fn cluster(self, nodes: usize) -> ClusterOptions {
        let mut opts = ClusterOptions::new(nodes);
        opts.gossip = !self.no_gossip;
        opts.sync_interval_ms = self.sync_interval_ms;
        opts.node_bin = self.node_bin;
        opts
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Up {
            nodes,
            base_dir,
            node,
        } => {
            let mut opts = node.cluster(nodes);
            if let Some(dir) = &base_dir {
                opts.admin_token = mc_testnet::up::kept_token(dir, &opts.admin_token)?;
            }
            opts.base_dir = base_dir;
            mc_testnet::up::run(opts).await
        }
        Command::Bench {
            bench:
                Bench::Convergence {
                    nodes,
                    writes,
                    json,
                    seed,
                    timeout_s,
                    node,
                },
        } => {
            let opts = BenchOptions {
                cluster: node.cluster(nodes),
                writes,
                seed,
                timeout: Duration::from_secs(timeout_s),
                json_path: json,
            };
            let report = bench::convergence(opts).await?;
            print!("{}", bench::render(&report));
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Load {
                    nodes,
                    writers,
                    duration,
                    max_writes,
                    value_bytes,
                    json,
                    timeout_s,
                    node,
                },
        } => {
            let opts = load::LoadOptions {
                cluster: node.cluster(nodes),
                writers,
                duration: Duration::from_secs(duration),
                max_writes,
                value_bytes,
                timeout: Duration::from_secs(timeout_s),
                json_path: json,
            };
            let report = load::run(opts).await?;
            print!("{}", load::render(&report));
            Ok(())
        }
        Command::Bench {
            bench:
                Bench::Campaign {
                    nodes,
                    rounds,
                    local_epochs,
                    batch_size,
                    learning_rate,
                    aggregation,
                    drift_correction,
                    hidden,
                    rows,
                    seed,
                    csv_dir,
                    round_deadline_s,
                    timeout_s,
                    json,
                    node,
                },
        } => {
            let opts = campaign::CampaignOptions {
                cluster: node.cluster(nodes),
                rounds,
                local_epochs,
                batch_size,
                learning_rate,
                aggregation,
                drift_correction: drift_correction.map(|d| matches!(d, OnOff::On)),
                hidden,
                rows,
                seed,
                csv_dir,
                round_deadline_s,
                timeout: Duration::from_secs(timeout_s),
                json_path: json,
            };
            let report = campaign::run(opts).await?;
            print!("{}", campaign::render(&report));
            Ok(())
        }
    }
}
