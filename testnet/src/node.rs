//! One real `mc-node` child process: accessors, signals, restart, RSS.
//!
//! Signals go to the child's pid, and only while the child has not been
//! reaped, so the pid cannot have been reused by an unrelated process.
//! Start-up itself lives in [`crate::launch`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;

use crate::client::NodeClient;
use crate::launch::{LOG_FILE, NodeConfig, NodeInfo, POLL, launch, log_tail, signal};

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(15);

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
        let client = NodeClient::new(&info.http_addr)?.with_token(config.token()?);
        Ok(Self {
            bin: bin.to_path_buf(),
            config,
            state: State::Running(child),
            info,
            client,
        })
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
    /// The pid of the latest process (as `node.json` reported it, checked
    /// against the spawned child); kept after it exits.
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
    /// The admin token the harness sends ([`NodeConfig::token`]).
    pub fn admin_token(&self) -> Result<String> {
        self.config.token()
    }
    /// A reqwest client that sends the admin token on every request.
    pub fn http(&self) -> Result<reqwest::Client> {
        crate::client::authed_http(&self.config.token()?)
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
        let addr = addrs
            .iter()
            .find(|a| a.starts_with("/ip4/127.0.0.1/"))
            .or(addrs.first());
        let addr = addr.cloned().unwrap_or_default();
        if addr.contains("/p2p/") {
            addr
        } else {
            format!("{addr}/p2p/{}", self.info.peer_id)
        }
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
            bail!(
                "mc-node {} already exited with {status}",
                self.config.region
            );
        }
        let State::Running(child) = &mut self.state else {
            unreachable!("checked above")
        };
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
            return Ok(Stopped {
                status,
                forced: false,
                already_exited: true,
            });
        }
        let State::Running(child) = &mut self.state else {
            unreachable!("checked above")
        };
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
        Ok(Stopped {
            status,
            forced,
            already_exited: false,
        })
    }

    /// Starts the node again on the same data dir (stopping it first if it is
    /// still running) and waits until it is ready.
    pub async fn restart(&mut self) -> Result<()> {
        if self.is_running() {
            self.stop().await?;
        }
        let (child, info) = launch(&self.bin, &self.config).await?;
        self.client = NodeClient::new(&info.http_addr)?.with_token(self.config.token()?);
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

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
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
}
