//! The learning worker on real processes: `mc-node` itself never maps
//! libtorch; model work runs in an `mc-learn-worker` child that is started
//! on demand, stopped when idle, and replaced when it dies.
//!
//! # Layout
//!
//! - `an_idle_node_maps_no_libtorch_and_gives_the_worker_back` — a fresh
//!   node has no libtorch in `/proc/PID/maps`; training starts a worker
//!   that has; after the idle time the worker is gone and the node still
//!   maps none.
//! - `a_worker_killed_mid_training_is_replaced_and_the_job_retried` — custom
//!   training whose worker is SIGKILLed (by the pid the node reports) while
//!   it trains still answers 200 with a stored version; the node is
//!   unharmed, and the kill shows as one death and a second start.
//! - `a_hung_worker_is_killed_at_the_job_timeout` — a worker that never
//!   answers is killed after `--learn-worker-job-timeout-ms` on every try;
//!   the request gets `503 worker_unavailable` saying so, the node is
//!   unharmed and no worker is left behind.
//!
//! A campaign whose worker is killed mid-round is in
//! `federated_learning.rs`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mc_learn_core::synth;
use mc_testnet::{NodeConfig, NodeProcess, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(20);

async fn node(dir: &Path, extra: &[&str]) -> Result<NodeProcess> {
    let mut config = NodeConfig::new("us-east", dir.join("us-east"));
    config.extra_args = extra.iter().map(|s| s.to_string()).collect();
    NodeProcess::start(Path::new(env!("CARGO_BIN_EXE_mc-node")), config).await
}

fn maps_libtorch(pid: u32) -> Result<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .with_context(|| format!("reading /proc/{pid}/maps"))?;
    Ok(maps.contains("libtorch"))
}

async fn worker(http: &reqwest::Client, base: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/v1/learn/worker"))
        .send()
        .await?
        .json()
        .await?)
}

async fn latency_model(http: &reqwest::Client, base: &str) -> Result<Value> {
    Ok(http
        .get(format!("{base}/v1/models/latency"))
        .send()
        .await?
        .json()
        .await?)
}

async fn import_rows(http: &reqwest::Client, base: &str, rows: usize) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut org = synth::consortium(3, &mut rng).remove(1);
    org.rows = rows;
    let csv = synth::generate(&org, &mut rng)?.to_csv();
    let r = http
        .post(format!("{base}/v1/learn/import?model=latency"))
        .body(csv)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("import: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

#[tokio::test]
async fn an_idle_node_maps_no_libtorch_and_gives_the_worker_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node(dir.path(), &["--learn-worker-idle-ms", "500"]).await?;
    let base = node.http_url();
    let http = node.http()?;
    assert!(
        !maps_libtorch(node.info().pid)?,
        "a fresh node maps libtorch"
    );
    let idle = worker(&http, &base).await?;
    assert_eq!(idle["started"], 0, "{idle}");
    assert!(idle["pid"].is_null(), "{idle}");

    import_rows(&http, &base, 1_200).await?;
    let r = http
        .post(format!("{base}/v1/models/latency/train"))
        .json(&json!({"epochs": 2, "activation_floor": -100.0}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let after = worker(&http, &base).await?;
    assert_eq!(after["started"], 1, "{after}");
    assert_eq!(after["jobs"], 1, "{after}");
    let worker_pid = after["pid"]
        .as_u64()
        .context("a worker runs after training")? as u32;
    // The worker may already have been stopped (500 ms idle) by now.
    if let Ok(maps) = maps_libtorch(worker_pid) {
        assert!(maps, "the worker {worker_pid} runs without libtorch");
    }

    wait_until("the idle worker stopped", DEADLINE, POLL, async || {
        Ok(worker(&http, &base).await?["pid"].is_null())
    })
    .await?;
    let stopped = worker(&http, &base).await?;
    assert_eq!(stopped["stopped_idle"], 1, "{stopped}");
    assert!(!maps_libtorch(node.info().pid)?, "the node maps libtorch");
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_training_is_replaced_and_the_job_retried() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = node(dir.path(), &[]).await?;
    let base = node.http_url();
    let http = node.http()?;
    import_rows(&http, &base, 2_000).await?;

    // Long enough a training that the test sees the worker busy.
    let train = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/v1/models/latency/train");
        async move {
            let r = http
                .post(url)
                .json(&json!({"epochs": 400, "activation_floor": -100.0}))
                .send()
                .await?;
            let status = r.status().as_u16();
            anyhow::Ok((status, r.json::<Value>().await?))
        }
    });
    let mut busy_pid = 0;
    wait_until("the worker busy training", DEADLINE, POLL, async || {
        let w = worker(&http, &base).await?;
        if w["busy"] == true
            && let Some(pid) = w["pid"].as_u64()
        {
            busy_pid = pid as u32;
            return Ok(true);
        }
        Ok(false)
    })
    .await?;
    kill(Pid::from_raw(busy_pid as i32), Signal::SIGKILL)?;

    let (status, trained) = train.await??;
    assert_eq!(status, 200, "{trained}");
    assert_eq!(trained["version"], 1, "{trained}");
    let after = worker(&http, &base).await?;
    assert_eq!(after["died"], 1, "{after}");
    assert_eq!(after["started"], 2, "{after}");
    assert_ne!(after["pid"].as_u64(), Some(u64::from(busy_pid)), "{after}");
    assert!(node.is_running(), "the node survived its worker");
    let models = latency_model(&http, &base).await?;
    assert_eq!(models["active_version"], 1, "{models}");
    Ok(())
}

#[tokio::test]
async fn a_hung_worker_is_killed_at_the_job_timeout() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Reads nothing, answers nothing, exits only when killed.
    let hung = dir.path().join("hung-worker.sh");
    std::fs::write(&hung, "#!/bin/sh\nexec sleep 600\n")?;
    std::fs::set_permissions(&hung, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let hung = hung.to_str().context("path")?.to_string();
    let mut node = node(
        dir.path(),
        &[
            "--learn-worker",
            &hung,
            "--learn-worker-job-timeout-ms",
            "300",
        ],
    )
    .await?;
    let base = node.http_url();
    let http = node.http()?;
    import_rows(&http, &base, 1_200).await?;

    let r = http
        .post(format!("{base}/v1/models/latency/train"))
        .json(&json!({"epochs": 1}))
        // Without the timeout the request would wait for ever.
        .timeout(DEADLINE)
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await?;
    assert_eq!(body["error"], "worker_unavailable", "{body}");
    assert!(
        body.to_string().contains("no answer within 300 ms"),
        "{body}"
    );
    let w = worker(&http, &base).await?;
    assert_eq!(w["timed_out"], 3, "{w}");
    assert_eq!(w["died"], 3, "{w}");
    assert_eq!(w["started"], 3, "{w}");
    assert_eq!(w["job_timeout_ms"], 300, "{w}");
    assert!(w["pid"].is_null(), "no worker left running: {w}");
    assert!(node.is_running(), "the node survived its hung worker");
    let models = latency_model(&http, &base).await?;
    assert_eq!(
        models["rows"], 1_200,
        "the stored rows are untouched: {models}"
    );
    Ok(())
}
