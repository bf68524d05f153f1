//! The node's configuration: a TOML file whose values command-line flags override.
//!
//! ```toml
//! region = "us-east"
//! data_dir = "/var/lib/mc-node"
//! listen = ["/ip4/0.0.0.0/tcp/4001"]
//! http = "0.0.0.0:8080"
//! bootstrap = ["/ip4/10.0.0.2/tcp/4001/p2p/12D3Koo..."]
//! gossip = true
//! sync_interval_ms = 5000
//! log_format = "text"     # or "json"
//! learn_worker = "/usr/local/bin/mc-learn-worker"   # default: next to mc-node
//! learn_worker_idle_ms = 20000
//! learn_worker_job_timeout_ms = 600000
//! open_reads = false      # true: GET routes need no token
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use libp2p::Multiaddr;
use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The configuration file's contents; every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`NodeConfig::region`].
    pub region: Option<String>,
    /// See [`NodeConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`NodeConfig::listen`].
    pub listen: Option<Vec<String>>,
    /// See [`NodeConfig::http`].
    pub http: Option<String>,
    /// See [`NodeConfig::bootstrap`].
    pub bootstrap: Option<Vec<String>>,
    /// See [`NodeConfig::gossip`].
    pub gossip: Option<bool>,
    /// See [`NodeConfig::sync_interval_ms`].
    pub sync_interval_ms: Option<u64>,
    /// See [`NodeConfig::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`NodeConfig::learn_worker`].
    pub learn_worker: Option<PathBuf>,
    /// See [`NodeConfig::learn_worker_idle_ms`].
    pub learn_worker_idle_ms: Option<u64>,
    /// See [`NodeConfig::learn_worker_job_timeout_ms`].
    pub learn_worker_job_timeout_ms: Option<u64>,
    /// See [`NodeConfig::open_reads`].
    pub open_reads: Option<bool>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// A complete, validated node configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The region this node serves.
    pub region: String,
    /// Where the store and `node.json` live.
    pub data_dir: PathBuf,
    /// libp2p listen addresses (port 0 picks a free port).
    pub listen: Vec<Multiaddr>,
    /// The HTTP API's address (port 0 picks a free port).
    pub http: SocketAddr,
    /// Peers to dial at start, with their `/p2p/` suffix.
    pub bootstrap: Vec<Multiaddr>,
    /// Push local changes by gossip.
    pub gossip: bool,
    /// Anti-entropy interval.
    pub sync_interval_ms: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// The `mc-learn-worker` binary model work runs in; `None` for the one
    /// next to the running `mc-node`.
    pub learn_worker: Option<PathBuf>,
    /// Idle time after which the learning worker (and libtorch's memory)
    /// is given back.
    pub learn_worker_idle_ms: u64,
    /// How long one learning job may go unanswered before the worker is
    /// killed and the job retried.
    pub learn_worker_job_timeout_ms: u64,
    /// `GET` routes answer without a token (mutating routes always need one).
    pub open_reads: bool,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--region`
    pub region: Option<String>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--listen` (repeatable)
    pub listen: Vec<String>,
    /// `--http`
    pub http: Option<String>,
    /// `--bootstrap` (repeatable)
    pub bootstrap: Vec<String>,
    /// `--no-gossip`
    pub no_gossip: bool,
    /// `--sync-interval-ms`
    pub sync_interval_ms: Option<u64>,
    /// `--log-format`
    pub log_format: Option<LogFormat>,
    /// `--learn-worker`
    pub learn_worker: Option<PathBuf>,
    /// `--learn-worker-idle-ms`
    pub learn_worker_idle_ms: Option<u64>,
    /// `--learn-worker-job-timeout-ms`
    pub learn_worker_job_timeout_ms: Option<u64>,
    pub open_reads: bool,
}

impl NodeConfig {
    /// Merges the file (if any) with the flags, flags winning, and validates.
    pub fn resolve(file: FileConfig, flags: Overrides) -> anyhow::Result<Self> {
        let region = flags
            .region
            .or(file.region)
            .context("no region: pass --region or set `region` in the config file")?;
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bail!("invalid region {region:?}: use letters, digits and '-' (e.g. us-east)");
        }
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .context("no data directory: pass --data-dir or set `data_dir`")?;
        let listen = pick(flags.listen, file.listen, "/ip4/127.0.0.1/tcp/0");
        let listen = parse_addrs(&listen, "listen")?;
        let http = flags
            .http
            .or(file.http)
            .unwrap_or_else(|| "127.0.0.1:0".into());
        let http = http
            .parse()
            .with_context(|| format!("invalid --http address {http:?} (want IP:PORT)"))?;
        let bootstrap = pick(flags.bootstrap, file.bootstrap, "");
        let bootstrap = parse_addrs(&bootstrap, "bootstrap")?;
        let sync_interval_ms = flags
            .sync_interval_ms
            .or(file.sync_interval_ms)
            .unwrap_or(5_000);
        if sync_interval_ms == 0 {
            bail!("sync_interval_ms must be positive");
        }
        Ok(Self {
            region,
            data_dir,
            listen,
            http,
            bootstrap,
            gossip: !flags.no_gossip && file.gossip.unwrap_or(true),
            sync_interval_ms,
            log_format: flags.log_format.or(file.log_format).unwrap_or_default(),
            learn_worker: flags.learn_worker.or(file.learn_worker),
            learn_worker_idle_ms: flags
                .learn_worker_idle_ms
                .or(file.learn_worker_idle_ms)
                .unwrap_or(crate::worker::DEFAULT_IDLE.as_millis() as u64),
            learn_worker_job_timeout_ms: flags
                .learn_worker_job_timeout_ms
                .or(file.learn_worker_job_timeout_ms)
                .unwrap_or(crate::worker::DEFAULT_JOB_TIMEOUT.as_millis() as u64),
            open_reads: flags.open_reads || file.open_reads.unwrap_or(false),
        })
    }
}

fn pick(flags: Vec<String>, file: Option<Vec<String>>, default: &str) -> Vec<String> {
    if !flags.is_empty() {
        flags
    } else if let Some(file) = file {
        file
    } else if default.is_empty() {
        Vec::new()
    } else {
        vec![default.to_string()]
    }
}

fn parse_addrs(addrs: &[String], what: &str) -> anyhow::Result<Vec<Multiaddr>> {
    addrs
        .iter()
        .map(|a| {
            a.parse()
                .with_context(|| format!("invalid {what} multiaddr {a:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file: FileConfig = toml::from_str(
            "region = \"eu-west\"\ndata_dir = \"/d\"\nsync_interval_ms = 900\ngossip = true\n",
        )
        .unwrap();
        let flags = Overrides {
            region: Some("us-east".into()),
            no_gossip: true,
            ..Default::default()
        };
        let c = NodeConfig::resolve(file, flags).unwrap();
        assert_eq!(c.region, "us-east");
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        assert_eq!(c.sync_interval_ms, 900);
        assert!(!c.gossip);
        assert_eq!(
            c.listen,
            vec!["/ip4/127.0.0.1/tcp/0".parse::<Multiaddr>().unwrap()]
        );
        assert_eq!(c.http.port(), 0);
    }

    #[test]
    fn bad_values_give_clear_errors() {
        let base = || Overrides {
            region: Some("us-east".into()),
            data_dir: Some("/d".into()),
            ..Default::default()
        };
        let err = NodeConfig::resolve(
            FileConfig::default(),
            Overrides {
                region: None,
                ..base()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("no region"));
        let err = NodeConfig::resolve(
            FileConfig::default(),
            Overrides {
                http: Some("nope".into()),
                ..base()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("--http"));
        let err = NodeConfig::resolve(
            FileConfig::default(),
            Overrides {
                bootstrap: vec!["garbage".into()],
                ..base()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("bootstrap"));
        assert!(toml::from_str::<FileConfig>("unknown_key = 1").is_err());
    }
}
