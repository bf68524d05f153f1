//! What the model API must never lose or mangle, on one real node.
//!
//! # Layout
//!
//! - `concurrent_imports_and_trainings_lose_no_row_and_no_version` — eight
//!   imports at once add all their rows; three trainings at once make
//!   versions 1, 2 and 3, each stored.
//! - `every_upload_route_takes_64_mib_and_not_a_byte_more` — import,
//!   transfer and campaign updates answer a 64 MiB body on its merits and
//!   a byte more with `413 payload_too_large`; an update posted to another
//!   campaign's path is `400 campaign_mismatch`.
//! - `versions_rows_and_campaign_results_survive_a_restart` — a node that
//!   trained, imported and ran a one-member campaign is SIGKILLed and
//!   restarted: the rows, the versions (with their weights) and the
//!   campaign's record are all there.
//! - `every_builtin_model_trains` — `error_rate`, `memory` and `anomaly`
//!   (the classifier) train on synthetic rows and report their scores.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use mc_learn_core::synth;
use mc_testnet::{NodeConfig, NodeProcess, wait_until};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);
const MAX_UPLOAD: usize = 64 * 1024 * 1024;

async fn node(dir: &Path) -> Result<NodeProcess> {
    let config = NodeConfig::new("us-east", dir.join("us-east"));
    NodeProcess::start(Path::new(env!("CARGO_BIN_EXE_mc-node")), config).await
}

/// `rows` synthetic rows of one organisation (`seed` picks which rows).
fn org_csv(rows: usize, seed: u64) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut org = synth::consortium(3, &mut rng).remove(1);
    org.rows = rows;
    Ok(synth::generate(&org, &mut rng)?.to_csv())
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn model(http: &reqwest::Client, base: &str, name: &str) -> Result<Value> {
    let (status, body) = send(http.get(format!("{base}/v1/models/{name}"))).await?;
    if status != 200 {
        bail!("GET model {name}: {status} {body}");
    }
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_and_trainings_lose_no_row_and_no_version() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node(dir.path()).await?;
    let base = node.http_url();
    let http = node.http()?;

    let imports: Vec<_> = (0..8)
        .map(|i| {
            let http = http.clone();
            let url = format!("{base}/v1/learn/import?model=latency&retrain_on_drift=false");
            let csv = org_csv(150, 100 + i);
            tokio::spawn(async move { send(http.post(url).body(csv?)).await })
        })
        .collect();
    for import in imports {
        let (status, body) = import.await??;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(model(&http, &base, "latency").await?["rows"], 8 * 150);

    let trainings: Vec<_> = (0..3)
        .map(|seed| {
            let http = http.clone();
            let url = format!("{base}/v1/models/latency/train");
            let body =
                json!({"epochs": 2, "min_rows": 100, "activation_floor": -100.0, "seed": seed});
            tokio::spawn(async move { send(http.post(url).json(&body)).await })
        })
        .collect();
    let mut versions = Vec::new();
    for training in trainings {
        let (status, body) = training.await??;
        assert_eq!(status, 200, "{body}");
        versions.push(body["version"].as_u64().context("version")?);
    }
    versions.sort_unstable();
    assert_eq!(versions, [1, 2, 3]);
    let info = model(&http, &base, "latency").await?;
    assert_eq!(info["versions"], 3, "{info}");
    Ok(())
}

#[tokio::test]
async fn every_upload_route_takes_64_mib_and_not_a_byte_more() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node(dir.path()).await?;
    let base = node.http_url();
    let http = node.http()?;
    let routes = [
        format!("{base}/v1/learn/import?model=latency"),
        format!("{base}/v1/models/latency/transfer?k=1"),
        format!("{base}/v1/campaigns/{}/updates", "ab".repeat(16)),
    ];
    for url in &routes {
        let (status, body) = send(http.post(url).body(vec![b'7'; MAX_UPLOAD])).await?;
        assert_ne!(status, 413, "{url}: 64 MiB is within the limit: {body}");
        assert!((400..500).contains(&status), "{url}: {status} {body}");
        let (status, body) = send(http.post(url).body(vec![b'7'; MAX_UPLOAD + 1])).await?;
        assert_eq!(status, 413, "{url}: {body}");
        assert_eq!(body["error"], "payload_too_large", "{url}: {body}");
    }
    Ok(())
}

#[tokio::test]
async fn versions_rows_and_campaign_results_survive_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = node(dir.path()).await?;
    let base = node.http_url();
    let http = node.http()?;
    let (status, body) = send(
        http.post(format!("{base}/v1/learn/import?model=latency"))
            .body(org_csv(1_200, 7)?),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    let (status, trained) = send(
        http.post(format!("{base}/v1/models/latency/train"))
            .json(&json!({"epochs": 3, "activation_floor": -100.0})),
    )
    .await?;
    assert_eq!(status, 200, "{trained}");
    let me = node.peer_id().to_string();
    let (status, created) = send(http.post(format!("{base}/v1/campaigns")).json(&json!({
        "model": "latency", "rounds": 2, "local_epochs": 1, "participants": [me],
        "aggregation": "fedavg", "round_deadline_s": 60.0,
    })))
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().context("campaign id")?.to_string();
    let campaign_url = format!("{base}/v1/campaigns/{id}");
    wait_until("the campaign completed", DEADLINE, POLL, async || {
        Ok(send(http.get(&campaign_url)).await?.1["state"] == "completed")
    })
    .await?;
    wait_until("the federated version stored", DEADLINE, POLL, async || {
        Ok(model(&http, &base, "latency").await?["versions"] == 2)
    })
    .await?;
    let before = model(&http, &base, "latency").await?;
    let (_, campaign_before) = send(http.get(&campaign_url)).await?;
    let weights_before = http
        .get(format!("{base}/v1/models/latency/weights"))
        .send()
        .await?
        .bytes()
        .await?;

    node.kill_hard()?;
    node.restart().await?;
    let base = node.http_url();
    let after = model(&http, &base, "latency").await?;
    assert_eq!(after, before, "the model's rows and versions after restart");
    assert_eq!(after["rows"], 1_200);
    let (status, campaign_after) = send(http.get(format!("{base}/v1/campaigns/{id}"))).await?;
    assert_eq!(status, 200, "{campaign_after}");
    assert_eq!(campaign_after["state"], "completed");
    assert_eq!(campaign_after["model_hash"], campaign_before["model_hash"]);
    assert_eq!(campaign_after["rounds"], campaign_before["rounds"]);
    let weights_after = http
        .get(format!("{base}/v1/models/latency/weights"))
        .send()
        .await?
        .bytes()
        .await?;
    assert_eq!(weights_after, weights_before);
    Ok(())
}

#[tokio::test]
async fn every_builtin_model_trains() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node(dir.path()).await?;
    let base = node.http_url();
    let http = node.http()?;
    let csv = org_csv(2_000, 9)?;
    for name in ["error_rate", "memory", "anomaly"] {
        let (status, body) = send(
            http.post(format!("{base}/v1/learn/import?model={name}"))
                .body(csv.clone()),
        )
        .await?;
        assert_eq!(status, 200, "{name}: {body}");
        let (status, trained) = send(
            http.post(format!("{base}/v1/models/{name}/train"))
                .json(&json!({"epochs": 5, "activation_floor": -100.0})),
        )
        .await?;
        assert_eq!(status, 200, "{name}: {trained}");
        assert_eq!(trained["version"], 1, "{name}: {trained}");
        let scores = &trained["evaluation"]["scores"];
        let score = if name == "anomaly" {
            scores["accuracy"].as_f64()
        } else {
            scores["r2"].as_f64()
        };
        let score = score.with_context(|| format!("{name}: {trained}"))?;
        assert!(score.is_finite(), "{name}: {trained}");
        if name == "anomaly" {
            assert!((0.0..=1.0).contains(&score), "{name}: {trained}");
            assert!(scores["f1"].is_number(), "{name}: {trained}");
        } else {
            // Better than predicting the mean on the memory model, whose
            // target is next hour's memory (close to this hour's).
            assert!(name != "memory" || score > 0.5, "{name}: {trained}");
        }
    }
    Ok(())
}
