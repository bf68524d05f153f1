//! The `mc-node` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{FileConfig, LogFormat, NodeConfig, Overrides};

/// One region node of Mission Control Mesh.
#[derive(Debug, Parser)]
#[command(name = "mc-node", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node until SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Models, data, training and federated campaigns of a running node.
    Learn(crate::cli_learn::LearnArgs),
}

/// Flags of `mc-node run`; each overrides the config file's value.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A TOML config file (see the README for its keys).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The region this node serves, e.g. us-east.
    #[arg(long)]
    pub region: Option<String>,
    /// Directory for the store, the node key and node.json.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// libp2p listen multiaddr (repeatable); default /ip4/127.0.0.1/tcp/0.
    #[arg(long)]
    pub listen: Vec<String>,
    /// HTTP API address; default 127.0.0.1:0 (a free port).
    #[arg(long)]
    pub http: Option<String>,
    /// A peer to dial at start, /ip4/…/tcp/…/p2p/… (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Do not push changes by gossip; rely on anti-entropy sync alone.
    #[arg(long)]
    pub no_gossip: bool,
    /// Anti-entropy interval in milliseconds; default 5000.
    #[arg(long)]
    pub sync_interval_ms: Option<u64>,
    /// Log format; default text.
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The mc-learn-worker binary that trains models; default: the one next
    /// to mc-node (env MC_LEARN_WORKER).
    #[arg(long, env = "MC_LEARN_WORKER")]
    pub learn_worker: Option<std::path::PathBuf>,
    /// Stop the learning worker after this many idle milliseconds (giving
    /// libtorch's memory back); default 20000.
    #[arg(long)]
    pub learn_worker_idle_ms: Option<u64>,
    /// Kill the learning worker (and retry the job on a fresh one) when a
    /// job goes unanswered this many milliseconds; default 600000.
    #[arg(long)]
    pub learn_worker_job_timeout_ms: Option<u64>,
    /// Serve GET routes without a token (writes always need one). The admin
    /// token comes from MC_ADMIN_TOKEN, or is created on first start in
    /// DATA_DIR/admin.token.
    #[arg(long)]
    pub open_reads: bool,
}

impl RunArgs {
    /// Reads the config file, if any, and applies the flags over it.
    pub fn resolve(self) -> anyhow::Result<NodeConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        NodeConfig::resolve(
            file,
            Overrides {
                region: self.region,
                data_dir: self.data_dir,
                listen: self.listen,
                http: self.http,
                bootstrap: self.bootstrap,
                no_gossip: self.no_gossip,
                sync_interval_ms: self.sync_interval_ms,
                log_format: self.log_format,
                learn_worker: self.learn_worker,
                learn_worker_idle_ms: self.learn_worker_idle_ms,
                learn_worker_job_timeout_ms: self.learn_worker_job_timeout_ms,
                open_reads: self.open_reads,
            },
        )
    }
}

/// The log filter: `RUST_LOG` (default `info`, libp2p and sled quieter), with
/// automerge at `warn` unless `RUST_LOG` names it. Automerge 0.12 opens
/// `#[instrument]` spans at info level whose fields are its whole change
/// graph, formatted on every applied change: left on, they cost more than the
/// change itself and grow with the document's history.
pub fn log_filter(rust_log: Option<&str>) -> String {
    let base = rust_log.unwrap_or("info,libp2p=warn,sled=warn");
    if base.contains("automerge") {
        base.to_owned()
    } else {
        format!("{base},automerge=warn")
    }
}

/// Installs the tracing subscriber with [`log_filter`].
pub fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter(rust_log.as_deref()))
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(log_filter(None)))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    result
        .map_err(|e| anyhow::anyhow!(e))
        .context("cannot install the logger")
}

/// Resolves when the process gets SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn automerge_spans_stay_off_unless_asked_for() {
        assert_eq!(
            log_filter(None),
            "info,libp2p=warn,sled=warn,automerge=warn"
        );
        assert_eq!(log_filter(Some("debug")), "debug,automerge=warn");
        assert_eq!(log_filter(Some("automerge=trace")), "automerge=trace");
    }
}
