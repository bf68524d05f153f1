//! Starting one `mc-node`: where the binary is, its command line, and the
//! readiness protocol.
//!
//! Start-up: delete a stale `DATA_DIR/node.json`, spawn the node with port-0
//! listeners and its output appended to `DATA_DIR/node.log`, poll for the
//! ready file, check that it names the spawned pid, then poll `GET /status`
//! until it answers 200 with the same peer id. A child that fails to become
//! ready is SIGKILLed by pid and reaped before the error is returned, with
//! the tail of its log attached.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;

use crate::client::NodeClient;

/// The ready file a node writes into its data dir.
pub const NODE_JSON: &str = "node.json";
/// The file a node writes its generated admin token to, in its data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// The file that receives a node's stdout and stderr, in its data dir.
pub const LOG_FILE: &str = "node.log";
/// Interval of the harness's poll loops.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Finds the `mc-node` binary: `explicit`, else `$MC_NODE_BIN`, else a
/// sibling of the current executable or of its parent directory (test
/// executables live in `target/<profile>/deps/`).
pub fn locate_node_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return existing(path).with_context(|| format!("--node-bin {}", path.display()));
    }
    if let Some(path) = std::env::var_os("MC_NODE_BIN") {
        let path = PathBuf::from(path);
        return existing(&path).with_context(|| format!("MC_NODE_BIN={}", path.display()));
    }
    let exe = std::env::current_exe().context("finding the current executable")?;
    let dir = exe
        .parent()
        .context("the current executable has no parent directory")?;
    let candidates = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("mc-node"));
    let candidates: Vec<PathBuf> = candidates.collect();
    for candidate in &candidates {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
    bail!(
        "mc-node binary not found (tried {}); build it with `cargo build -p mc-node` using the same profile \
         (add --release for a release mc-testnet), or pass --node-bin / set MC_NODE_BIN",
        tried.join(", ")
    )
}

fn existing(path: &Path) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("{} is not a file", path.display());
    }
    Ok(path.to_path_buf())
}

/// How to run one node. Listeners are always loopback port 0.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub region: String,
    pub data_dir: PathBuf,
    /// `--bootstrap` multiaddrs (with `/p2p/PEER_ID`).
    pub bootstrap: Vec<String>,
    /// `false` passes `--no-gossip`.
    pub gossip: bool,
    pub sync_interval_ms: Option<u64>,
    /// `json` or `text`; the node's default when `None`.
    pub log_format: Option<String>,
    /// Appended verbatim after the other arguments.
    pub extra_args: Vec<String>,
    /// Environment variables for the child (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Limit for the whole start-up (ready file and first `/status`).
    pub ready_timeout: Duration,
    /// Given to the node as `MC_ADMIN_TOKEN`; the harness's clients send it.
    /// `None`: the node creates its own on first start and the harness reads
    /// it from `DATA_DIR/admin.token`.
    pub admin_token: Option<String>,
}

impl NodeConfig {
    pub fn new(region: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            region: region.into(),
            data_dir: data_dir.into(),
            bootstrap: Vec::new(),
            gossip: true,
            sync_interval_ms: None,
            log_format: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(60),
            admin_token: Some(crate::client::random_token()),
        }
    }

    /// The admin token the harness sends: the configured one, else the one the
    /// node wrote to `DATA_DIR/admin.token`.
    pub fn token(&self) -> Result<String> {
        if let Some(token) = &self.admin_token {
            return Ok(token.clone());
        }
        let path = self.data_dir.join(ADMIN_TOKEN_FILE);
        let text = fs::read_to_string(&path)
            .with_context(|| format!("reading the node's admin token {}", path.display()))?;
        Ok(text.trim().to_owned())
    }

    /// The command line after the binary name.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--region", &self.region, "--data-dir"]
            .map(String::from)
            .to_vec();
        args.push(self.data_dir.display().to_string());
        args.extend(
            ["--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0"].map(String::from),
        );
        for addr in &self.bootstrap {
            args.extend(["--bootstrap".to_owned(), addr.clone()]);
        }
        if !self.gossip {
            args.push("--no-gossip".to_owned());
        }
        if let Some(ms) = self.sync_interval_ms {
            args.extend(["--sync-interval-ms".to_owned(), ms.to_string()]);
        }
        if let Some(format) = &self.log_format {
            args.extend(["--log-format".to_owned(), format.clone()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The contents of `node.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeInfo {
    pub peer_id: String,
    pub region: String,
    pub http_addr: String,
    pub listen_addrs: Vec<String>,
    pub pid: u32,
}

impl NodeInfo {
    /// Reads `DIR/node.json`; `None` while it does not exist.
    pub fn read(data_dir: &Path) -> Result<Option<Self>> {
        let path = data_dir.join(NODE_JSON);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!(
                    "parsing {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&bytes)
                )
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// Sends `sig` to the child by pid (the caller must not have reaped it).
pub(crate) fn signal(child: &Child, sig: Signal) -> Result<()> {
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    kill(Pid::from_raw(pid), sig).with_context(|| format!("sending {sig} to mc-node pid {pid}"))
}

pub(crate) fn log_tail(data_dir: &Path, max_bytes: usize) -> String {
    match fs::read(data_dir.join(LOG_FILE)) {
        Ok(bytes) => {
            String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(max_bytes)..]).into_owned()
        }
        Err(e) => format!("<no log: {e}>"),
    }
}

fn spawn(bin: &Path, config: &NodeConfig) -> Result<Child> {
    let dir = &config.data_dir;
    fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))?;
    let ready = dir.join(NODE_JSON);
    match fs::remove_file(&ready) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing stale {}", ready.display()));
        }
        _ => {}
    }
    let log_path = dir.join(LOG_FILE);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let args = config.args();
    writeln!(log, "=== mc-testnet: {} {}", bin.display(), args.join(" "))
        .context("writing the log header")?;
    let stderr = log.try_clone().context("duplicating the log file handle")?;
    let mut command = Command::new(bin);
    match &config.admin_token {
        Some(token) => command.env("MC_ADMIN_TOKEN", token),
        None => command.env_remove("MC_ADMIN_TOKEN"),
    };
    command
        .args(&args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))
}

/// Owns a freshly spawned child until it is handed over; if dropped first
/// (start-up failed, or the start-up future was cancelled) it SIGKILLs the
/// child by pid and reaps it, so no node outlives an aborted start.
#[derive(Debug)]
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child is only taken by disarm")
    }

    fn disarm(mut self) -> Child {
        self.0.take().expect("the child is only taken by disarm")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = signal(child, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// Spawns the node and waits for readiness; on failure (or cancellation) the
/// child is killed and reaped before the error is returned.
pub(crate) async fn launch(bin: &Path, config: &NodeConfig) -> Result<(Child, NodeInfo)> {
    let mut guard = KillOnDrop(Some(spawn(bin, config)?));
    match wait_ready(guard.child(), config).await {
        Ok(info) => Ok((guard.disarm(), info)),
        Err(e) => {
            drop(guard);
            let tail = log_tail(&config.data_dir, 4000);
            let region = &config.region;
            Err(e.context(format!(
                "starting mc-node {region} (log tail below)\n{tail}"
            )))
        }
    }
}

async fn wait_ready(child: &mut Child, config: &NodeConfig) -> Result<NodeInfo> {
    let deadline = Instant::now() + config.ready_timeout;
    let mut last_error = None;
    let info = loop {
        if let Some(status) = child.try_wait()? {
            bail!("mc-node exited with {status} before writing {NODE_JSON}");
        }
        match NodeInfo::read(&config.data_dir) {
            Ok(Some(info)) => break info,
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            bail!(
                "no {NODE_JSON} within {:?} (last error: {last_error:?})",
                config.ready_timeout
            );
        }
        tokio::time::sleep(POLL).await;
    };
    if info.pid != child.id() {
        bail!(
            "{NODE_JSON} names pid {} but the spawned child is pid {}",
            info.pid,
            child.id()
        );
    }
    let client = NodeClient::new(&info.http_addr)?.with_token(config.token()?);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("mc-node exited with {status} before answering /status");
        }
        match client.status().await {
            Ok(status) if status.peer_id == info.peer_id => return Ok(info),
            Ok(status) => bail!(
                "/status peer_id {} differs from {NODE_JSON} {}",
                status.peer_id,
                info.peer_id
            ),
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            bail!(
                "GET /status not 200 within {:?} (last error: {last_error:?})",
                config.ready_timeout
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_use_port_zero_and_pass_options() {
        let mut config = NodeConfig::new("eu-west", "/tmp/x");
        config.bootstrap.push("/ip4/127.0.0.1/tcp/1/p2p/a".into());
        config.gossip = false;
        config.sync_interval_ms = Some(300);
        let args = config.args().join(" ");
        assert!(
            args.starts_with("run --region eu-west --data-dir /tmp/x"),
            "{args}"
        );
        assert!(
            args.contains("--listen /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0"),
            "{args}"
        );
        assert!(
            args.contains(
                "--bootstrap /ip4/127.0.0.1/tcp/1/p2p/a --no-gossip --sync-interval-ms 300"
            )
        );
    }

    #[test]
    fn locate_prefers_an_explicit_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("mc-node");
        fs::write(&bin, b"").unwrap();
        assert_eq!(locate_node_bin(Some(&bin)).unwrap(), bin);
        assert!(locate_node_bin(Some(&dir.path().join("missing"))).is_err());
    }
}
