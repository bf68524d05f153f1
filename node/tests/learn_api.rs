//! The model API of one real node: CSV import over HTTP and through
//! `mc-node learn`, custom training, transfer learning, weights and
//! performance, and the clear errors each gives on bad input.
//!
//! # Layout
//!
//! - `csv_import_checks_the_schema_and_loses_nothing` — missing columns are
//!   named, bad rows are reported by line, a refused file adds no row, a
//!   good file is counted.
//! - `custom_and_transfer_training_report_their_figures` — fewer than 1,000
//!   rows are refused; 2,000 synthetic rows train to an active version with
//!   R², MAE and `baseline_vs_custom`; transfer reports improvements; the
//!   weights download is safetensors; performance has the seed's fields.
//! - `the_cli_imports_and_reports_errors` — `mc-node learn import` with a
//!   good and a bad CSV, and `mc-node learn models`.

use std::process::Command;

use anyhow::Result;
use mc_learn_core::synth;
use mc_testnet::{Cluster, ClusterOptions};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde_json::{Value, json};

async fn one_node() -> Result<Cluster> {
    let opts = ClusterOptions::new(1).node_bin(env!("CARGO_BIN_EXE_mc-node"));
    Cluster::start(opts).await
}

async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
    let r = req.send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

/// `rows` rows of one synthetic organisation, as CSV.
fn org_csv(rows: usize, seed: u64) -> Result<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut org = synth::consortium(3, &mut rng).remove(1);
    org.rows = rows;
    Ok(synth::generate(&org, &mut rng)?.to_csv())
}

#[tokio::test]
async fn csv_import_checks_the_schema_and_loses_nothing() -> Result<()> {
    let cluster = one_node().await?;
    let base = cluster.clients()[0].base_url().to_string();
    let http = cluster.http()?;
    let import = format!("{base}/v1/learn/import?model=latency");

    let (status, body) = send(http.post(&import).body("hour_of_day,latency_ms\n1,2\n")).await?;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("thread_count") && detail.contains("memory_usage_percent"),
        "{detail}"
    );

    let good = org_csv(50, 1)?;
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    lines[3] = lines[3].replacen(|c: char| c.is_ascii_digit(), "x", 1);
    lines[7] = "1,2,3".to_string();
    let (status, body) = send(http.post(&import).body(lines.join("\n"))).await?;
    assert_eq!(status, 422, "{body}");
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    let bad_lines: Vec<u64> = errors.iter().filter_map(|e| e["line"].as_u64()).collect();
    assert_eq!(bad_lines, vec![4, 8], "{body}");

    let (status, models) = send(http.get(format!("{base}/v1/models"))).await?;
    assert_eq!(status, 200);
    let latency = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "latency")
        .cloned();
    assert_eq!(
        latency.as_ref().map(|m| m["rows"].clone()),
        Some(json!(0)),
        "nothing half-imported"
    );

    let (status, body) = send(http.post(&import).body(good)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imported_rows"], 50);
    assert_eq!(body["total_rows"], 50);

    let (status, body) = send(
        http.post(format!("{base}/v1/learn/import?model=nope"))
            .body("a\n1\n"),
    )
    .await?;
    assert_eq!(status, 404, "{body}");
    let (status, body) = send(
        http.post(format!("{base}/v1/models"))
            .body("{\"name\":\"x y\"}"),
    )
    .await?;
    assert_eq!(status, 400, "{body}");
    Ok(())
}

#[tokio::test]
async fn custom_and_transfer_training_report_their_figures() -> Result<()> {
    let cluster = one_node().await?;
    let base = cluster.clients()[0].base_url().to_string();
    let http = cluster.http()?;
    let import = format!("{base}/v1/learn/import?model=latency");
    let train = format!("{base}/v1/models/latency/train");

    let (status, _) = send(http.post(&import).body(org_csv(600, 2)?)).await?;
    assert_eq!(status, 200);
    let (status, body) = send(http.post(&train)).await?;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["detail"].as_str().unwrap_or_default().contains("1000"),
        "{body}"
    );
    let (status, body) = send(http.get(format!("{base}/v1/models/latency/performance"))).await?;
    assert_eq!(status, 404, "{body}");

    let (status, _) = send(
        http.post(format!("{import}&replace=true"))
            .body(org_csv(2_000, 3)?),
    )
    .await?;
    assert_eq!(status, 200);
    let (status, trained) = send(http.post(&train).json(&json!({"epochs": 30}))).await?;
    assert_eq!(status, 200, "{trained}");
    assert_eq!(trained["version"], 1);
    assert_eq!(trained["activated"], true);
    assert_eq!(trained["train_rows"], 1_600);
    assert_eq!(trained["test_rows"], 400);
    let r2 = trained["evaluation"]["scores"]["r2"]
        .as_f64()
        .unwrap_or(f64::NAN);
    assert!(r2 >= 0.7, "{trained}");
    assert!(
        trained["baseline_vs_custom"]["baseline_score"].is_number(),
        "{trained}"
    );

    let (status, refused) = send(http.post(format!(
        "{base}/v1/models/latency/transfer?k=1&epochs=5&learning_rate=-1"
    )))
    .await?;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused.to_string().contains("learning_rate"),
        "the error names the bad setting: {refused}"
    );
    let (status, refused) =
        send(http.post(format!("{base}/v1/models/latency/transfer?k=1&epochs=0"))).await?;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.to_string().contains("epochs"), "{refused}");

    let (status, transfer) = send(http.post(format!(
        "{base}/v1/models/latency/transfer?k=1&epochs=5&learning_rate=0.001"
    )))
    .await?;
    assert_eq!(status, 200, "{transfer}");
    assert_eq!(transfer["trained_layers"], 1);
    assert_eq!(transfer["frozen_layers"], 2);
    assert!(
        transfer["scratch"]["scores"]["r2"].is_number(),
        "{transfer}"
    );

    let weights = http
        .get(format!("{base}/v1/models/latency/weights"))
        .send()
        .await?;
    assert_eq!(weights.status(), 200);
    let bytes = weights.bytes().await?;
    let header_len = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + header_len])?;
    assert!(
        header["layers.0.weight"]["shape"] == json!([32, 7]),
        "{header}"
    );

    let (status, perf) = send(http.get(format!("{base}/v1/models/latency/performance"))).await?;
    assert_eq!(status, 200, "{perf}");
    for field in [
        "accuracy",
        "inference_latency_ms",
        "baseline_comparison",
        "drift",
    ] {
        assert!(!perf[field].is_null(), "missing {field}: {perf}");
    }
    assert_eq!(perf["version"], 2, "transfer made version 2");
    assert_eq!(perf["drift"]["detected"], false, "{perf}");

    // Rows from an organisation three times the size: drift is detected
    // and triggers a retrain (version 3).
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut big = synth::consortium(3, &mut rng).remove(1);
    big.rows = 500;
    big.load_scale *= 3.0;
    let shifted = synth::generate(&big, &mut rng)?.to_csv();
    let (status, report) = send(http.post(&import).body(shifted)).await?;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["drift"]["detected"], true, "{report}");
    assert_eq!(report["retrained"]["version"], 3, "{report}");
    Ok(())
}

#[tokio::test]
async fn the_cli_imports_and_reports_errors() -> Result<()> {
    let cluster = one_node().await?;
    let base = cluster.clients()[0].base_url().to_string();
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("good.csv");
    std::fs::write(&good, org_csv(30, 4)?)?;
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "hour_of_day,latency_ms\n1,2\n")?;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mc-node"))
            .args(["learn", "--api", &base])
            .env("MC_TOKEN", cluster.admin_token())
            .args(args)
            .output()
    };
    let out = cli(&[
        "import",
        "--csv",
        good.to_str().unwrap(),
        "--model",
        "latency",
    ])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["imported_rows"], 30);
    let out = cli(&[
        "import",
        "--csv",
        bad.to_str().unwrap(),
        "--model",
        "latency",
    ])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("thread_count"));
    let out = cli(&["models"])?;
    assert!(out.status.success());
    let models: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(models.as_array().map(Vec::len), Some(4));

    // A campaign's training settings pass through; a bad one is refused
    // with the field's name.
    let me = cluster.node(0).peer_id().to_string();
    let campaign = |extra: &[&str]| {
        let mut args = vec![
            "campaign",
            "--model",
            "latency",
            "--participants",
            &me,
            "--rounds",
            "2",
            "--no-wait",
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let out = campaign(&["--init", "xavier"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("init"));
    let out = campaign(&["--init", "he_uniform", "--final-rate-fraction", "1"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let id = stdout.trim().strip_prefix("campaign ").unwrap_or_default();
    let (status, view) = send(cluster.http()?.get(format!("{base}/v1/campaigns/{id}"))).await?;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["spec"]["init"], "he_uniform", "{view}");
    assert_eq!(view["spec"]["final_rate_fraction"], 1.0, "{view}");
    Ok(())
}
