//! `mc-testnet bench campaign` at toy size on real debug-build nodes: the
//! report has every part and the nodes end on one model.

use std::time::Duration;

use anyhow::Result;
use mc_testnet::ClusterOptions;
use mc_testnet::campaign::{CampaignOptions, render, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toy_campaign_bench_reports_rounds_one_model_and_rss() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let json = dir.path().join("campaign.json");
    let opts = CampaignOptions {
        cluster: ClusterOptions::new(2).node_bin(env!("CARGO_BIN_EXE_mc-node")),
        rounds: 2,
        local_epochs: 1,
        batch_size: 16,
        learning_rate: 0.001,
        aggregation: "fedavg".into(),
        drift_correction: Some(false),
        hidden: vec![8],
        rows: 100,
        seed: 3,
        csv_dir: None,
        round_deadline_s: 60.0,
        timeout: Duration::from_secs(240),
        json_path: Some(json.clone()),
    };
    let report = run(opts).await?;
    assert!(report.one_model, "{report:?}");
    assert_eq!(report.rows, vec![100, 100]);
    assert_eq!(
        report.round_times.len(),
        3,
        "the moments round and two model rounds"
    );
    assert!(
        report.round_times.iter().all(|r| r.accepted == 2),
        "{report:?}"
    );
    assert_eq!(report.drift_correction, serde_json::json!(false));
    assert_eq!(
        report.local_steps,
        Some(5),
        "1 epoch of ⌈(0.8 · 100) / 16⌉ steps"
    );
    assert!(report.wall_ms > 0.0);
    assert!(
        report.peak_node_rss_mb.iter().all(|&m| m > 0.0),
        "{report:?}"
    );
    let text = render(&report);
    assert!(text.contains("one model: true"), "{text}");
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
    assert_eq!(written["nodes"], 2);
    Ok(())
}
