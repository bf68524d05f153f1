//! A user-declared schema on a public data set, federated across three real
//! `mc-node` processes.
//!
//! The data is scikit-learn's Wisconsin breast-cancer table (569 rows, 30
//! features), which ships inside the scikit-learn package `scripts/setup.sh`
//! installs; `scripts/export_public_dataset.py` cuts it into three parts,
//! one per node, and writes the schema. Each node declares the model, imports
//! its part, trains a local-only model (custom training with the row floor
//! lowered for this small set), then all three run a campaign. The test
//! checks identical federated weights everywhere and prints the local-only
//! and federated F1 on each node's held-out rows (run with `--nocapture`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use mc_testnet::wait_until;
use serde_json::{Value, json};

mod common;

const START: Duration = Duration::from_secs(30);
const CAMPAIGN: Duration = Duration::from_secs(240);
const POLL: Duration = Duration::from_millis(200);

fn export(dir: &Path) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    ensure!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs the Python side)",
        python.display()
    );
    let status = Command::new(&python)
        .arg(root.join("scripts/export_public_dataset.py"))
        .arg(dir)
        .arg("3")
        .status()
        .context("running export_public_dataset.py")?;
    ensure!(
        status.success(),
        "export_public_dataset.py failed: {status}"
    );
    Ok(())
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn f1(v: &Value) -> f64 {
    v["scores"]["f1"].as_f64().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_schema_on_a_public_data_set_federates_across_three_nodes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    export(dir.path())?;
    let schema: Value = serde_json::from_slice(&std::fs::read(dir.path().join("schema.json"))?)?;
    let cluster = common::three_nodes(START).await?;
    let http = cluster.http()?;
    let bases: Vec<String> = cluster
        .clients()
        .iter()
        .map(|c| c.base_url().to_string())
        .collect();

    let mut local_f1 = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let (status, body) = send(http.post(format!("{base}/v1/models")).json(&schema)).await?;
        assert_eq!(status, 201, "declare on node {i}: {body}");
        let csv = std::fs::read(dir.path().join(format!("part-{i}.csv")))?;
        let (status, body) = send(
            http.post(format!("{base}/v1/learn/import?model=breast_cancer"))
                .body(csv),
        )
        .await?;
        assert_eq!(status, 200, "import on node {i}: {body}");
        // Local-only baseline: the 1,000-row floor is for real use; lowered
        // here because each part holds ~190 rows.
        let (status, body) = send(
            http.post(format!("{base}/v1/models/breast_cancer/train"))
                .json(&json!({ "min_rows": 100, "activation_floor": 0.0 })),
        )
        .await?;
        assert_eq!(status, 200, "local training on node {i}: {body}");
        local_f1.push(f1(&body["evaluation"]));
    }

    let peers: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.peer_id().to_string())
        .collect();
    let campaign = json!({
        "model": "breast_cancer", "rounds": 10, "local_epochs": 16, "participants": peers,
        "aggregation": "fedavg", "round_deadline_s": 60.0,
    });
    let (status, created) = send(
        http.post(format!("{}/v1/campaigns", bases[0]))
            .json(&campaign),
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().context("id")?.to_string();
    wait_until(
        "campaign completed everywhere",
        CAMPAIGN,
        POLL,
        async || {
            for base in &bases {
                let (_, v) = send(http.get(format!("{base}/v1/campaigns/{id}"))).await?;
                if v["state"] != "completed" {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;

    let mut weights = Vec::new();
    let mut federated_f1 = Vec::new();
    for base in &bases {
        let url = format!("{base}/v1/models/breast_cancer/performance");
        wait_until("federated version active", START, POLL, async || {
            let (status, v) = send(http.get(&url)).await?;
            Ok(status == 200
                && v["source"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("federated:")))
        })
        .await?;
        let (_, perf) = send(http.get(&url)).await?;
        federated_f1.push(perf["f1"].as_f64().unwrap_or(f64::NAN));
        let w = http
            .get(format!("{base}/v1/models/breast_cancer/weights"))
            .send()
            .await?;
        weights.push(w.bytes().await?.to_vec());
    }
    assert!(
        weights.iter().all(|w| *w == weights[0]),
        "federated weights differ"
    );
    eprintln!(
        "breast_cancer (569 rows over 3 nodes): held-out F1 local-only {local_f1:.3?}, federated {federated_f1:.3?}"
    );
    for (i, f) in federated_f1.iter().enumerate() {
        assert!(*f >= 0.85, "node {i}: federated F1 {f} below 0.85");
    }
    Ok(())
}
