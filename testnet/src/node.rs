//! One real `mc-node` child process.
//!
//! Start-up protocol: delete a stale `DATA_DIR/node.json`, spawn the node with
//! port-0 listeners and its output appended to `DATA_DIR/node.log`, poll for
//! the ready file, then poll `GET /status` until it answers 200 with the same
//! peer id. Signals go to the child's pid, and only while the child has not
//! been reaped.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;

use crate::client::NodeClient;

/// The ready file a node writes into its data dir.
pub const NODE_JSON: &str = "node.json";
/// The file that receives a node's stdout and stderr, in its data dir.
pub const LOG_FILE: &str = "node.log";
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(20);

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
    let dir = exe.parent().context("the current executable has no parent directory")?;
    let candidates = [Some(dir), dir.parent()].into_iter().flatten().map(|d| d.join("mc-node"));
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
        }
    }

    /// The command line after the binary name.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--region", &self.region, "--data-dir"].map(String::from).to_vec();
        args.push(self.data_dir.display().to_string());
        args.extend(["--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0"].map(String::from));
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
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("parsing {}: {}", path.display(), String::from_utf8_lossy(&bytes))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// How a node ended after [`NodeProcess::stop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    pub status: ExitStatus,
    /// SIGTERM was not enough within the deadline; SIGKILL was sent.
    pub forced: bool,
    /// The process had already exited before it was asked to stop.
    pub already_exited: bool,
}

impl Stopped {
    /// Exited by itself after SIGTERM with status 0.
    pub fn is_graceful(&self) -> bool {
        !self.forced && !self.already_exited && self.status.success()
    }
}

#[derive(Debug)]
enum State {
    Running(Child),
    Exited(ExitStatus),
}

/// A running (or stopped) `mc-node` child. Dropping it SIGKILLs the child.
#[derive(Debug)]
pub struct NodeProcess {
    bin: PathBuf,
    config: NodeConfig,
    state: State,
    info: NodeInfo,
    client: NodeClient,
}

impl NodeProcess {
    /// Spawns the node and waits until it is ready (ready file and
    /// `GET /status` 200).
    pub async fn start(bin: &Path, config: NodeConfig) -> Result<Self> {
        let (child, info) = launch(bin, &config).await?;
        let client = NodeClient::new(&info.http_addr)?;
        Ok(Self { bin: bin.to_path_buf(), config, state: State::Running(child), info, client })
    }

    /// The latest `node.json` (kept after the node stops).
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }
    pub fn peer_id(&self) -> &str {
        &self.info.peer_id
    }
    pub fn region(&self) -> &str {
        &self.config.region
    }
    pub fn pid(&self) -> u32 {
        self.info.pid
    }
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
    pub fn log_path(&self) -> PathBuf {
        self.config.data_dir.join(LOG_FILE)
    }
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }
    /// Change the configuration used by the next [`restart`](Self::restart).
    pub fn config_mut(&mut self) -> &mut NodeConfig {
        &mut self.config
    }
    pub fn client(&self) -> &NodeClient {
        &self.client
    }
    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.info.http_addr)
    }
    /// `http://127.0.0.1:PORT/status`.
    pub fn status_url(&self) -> String {
        format!("{}/status", self.http_url())
    }

    /// A dialable multiaddr ending in `/p2p/PEER_ID` (loopback preferred).
    pub fn p2p_addr(&self) -> String {
        let addrs = &self.info.listen_addrs;
        let addr = addrs.iter().find(|a| a.starts_with("/ip4/127.0.0.1/")).or(addrs.first());
        let addr = addr.cloned().unwrap_or_default();
        if addr.contains("/p2p/") { addr } else { format!("{addr}/p2p/{}", self.info.peer_id) }
    }

    /// Whether the child is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    /// The child's exit status, once it has exited.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if let State::Running(child) = &mut self.state {
            match child.try_wait().context("checking the mc-node child")? {
                Some(status) => self.state = State::Exited(status),
                None => return Ok(None),
            }
        }
        match self.state {
            State::Exited(status) => Ok(Some(status)),
            State::Running(_) => Ok(None),
        }
    }

    /// SIGKILL by pid, then reap. Simulates a crash.
    pub fn kill_hard(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exit_status()? {
            bail!("mc-node {} already exited with {status}", self.config.region);
        }
        let State::Running(child) = &mut self.state else { unreachable!("checked above") };
        signal(child, Signal::SIGKILL)?;
        let status = child.wait().context("reaping the killed mc-node")?;
        self.state = State::Exited(status);
        Ok(status)
    }

    /// SIGTERM by pid; SIGKILL if it has not exited after
    /// [`DEFAULT_STOP_TIMEOUT`].
    pub async fn stop(&mut self) -> Result<Stopped> {
        self.stop_within(DEFAULT_STOP_TIMEOUT).await
    }

    /// SIGTERM by pid; SIGKILL if it has not exited after `timeout`.
    pub async fn stop_within(&mut self, timeout: Duration) -> Result<Stopped> {
        if let Some(status) = self.exit_status()? {
            return Ok(Stopped { status, forced: false, already_exited: true });
        }
        let State::Running(child) = &mut self.state else { unreachable!("checked above") };
        signal(child, Signal::SIGTERM)?;
        let deadline = Instant::now() + timeout;
        let mut forced = false;
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for mc-node to stop")? {
                break status;
            }
            if Instant::now() >= deadline {
                signal(child, Signal::SIGKILL)?;
                forced = true;
                break child.wait().context("reaping the killed mc-node")?;
            }
            tokio::time::sleep(POLL).await;
        };
        self.state = State::Exited(status);
        Ok(Stopped { status, forced, already_exited: false })
    }

    /// Starts the node again on the same data dir (stopping it first if it is
    /// still running) and waits until it is ready.
    pub async fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop().await?;
        }
        let (child, info) = launch(&self.bin, &self.config).await?;
        self.client = NodeClient::new(&info.http_addr)?;
        self.info = info;
        self.state = State::Running(child);
        Ok(())
    }

    /// Resident set size from `/proc/PID/status` (`VmRSS`).
    pub fn rss_bytes(&mut self) -> Result<u64> {
        if !self.is_running() {
            bail!("mc-node {} is not running", self.config.region);
        }
        let path = format!("/proc/{}/status", self.info.pid);
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_vm_rss(&text).with_context(|| format!("no VmRSS line in {path}"))
    }

    /// The last `max_bytes` of the node's log file (for error messages).
    pub fn log_tail(&self, max_bytes: usize) -> String {
        log_tail(&self.config.data_dir, max_bytes)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let State::Running(child) = &mut self.state {
            let _ = signal(child, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, sig: Signal) -> Result<()> {
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    kill(Pid::from_raw(pid), sig).with_context(|| format!("sending {sig} to mc-node pid {pid}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

fn log_tail(data_dir: &Path, max_bytes: usize) -> String {
    match fs::read(data_dir.join(LOG_FILE)) {
        Ok(bytes) => String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(max_bytes)..]).into_owned(),
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
    writeln!(log, "=== mc-testnet: {} {}", bin.display(), args.join(" ")).context("writing the log header")?;
    let stderr = log.try_clone().context("duplicating the log file handle")?;
    Command::new(bin)
        .args(&args)
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))
}

/// Spawns the node and waits for readiness; on failure the child is killed
/// and reaped before the error is returned.
async fn launch(bin: &Path, config: &NodeConfig) -> Result<(Child, NodeInfo)> {
    let mut child = spawn(bin, config)?;
    match wait_ready(&mut child, config).await {
        Ok(info) => Ok((child, info)),
        Err(e) => {
            let _ = signal(&child, Signal::SIGKILL);
            let _ = child.wait();
            let tail = log_tail(&config.data_dir, 4000);
            Err(e.context(format!("starting mc-node {} (log tail below)\n{tail}", config.region)))
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
            bail!("no {NODE_JSON} within {:?} (last error: {last_error:?})", config.ready_timeout);
        }
        tokio::time::sleep(POLL).await;
    };
    if info.pid != child.id() {
        bail!("{NODE_JSON} names pid {} but the spawned child is pid {}", info.pid, child.id());
    }
    let client = NodeClient::new(&info.http_addr)?;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("mc-node exited with {status} before answering /status");
        }
        match client.status().await {
            Ok(status) if status.peer_id == info.peer_id => return Ok(info),
            Ok(status) => bail!("/status peer_id {} differs from {NODE_JSON} {}", status.peer_id, info.peer_id),
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            bail!("GET /status not 200 within {:?} (last error: {last_error:?})", config.ready_timeout);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tmc-node\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn args_use_port_zero_and_pass_options() {
        let mut config = NodeConfig::new("eu-west", "/tmp/x");
        config.bootstrap.push("/ip4/127.0.0.1/tcp/1/p2p/a".into());
        config.gossip = false;
        config.sync_interval_ms = Some(300);
        let args = config.args().join(" ");
        assert!(args.starts_with("run --region eu-west --data-dir /tmp/x"), "{args}");
        assert!(args.contains("--listen /ip4/127.0.0.1/tcp/0 --http 127.0.0.1:0"), "{args}");
        assert!(args.contains("--bootstrap /ip4/127.0.0.1/tcp/1/p2p/a --no-gossip --sync-interval-ms 300"));
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
