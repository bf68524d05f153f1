//! `mc-testnet bench campaign`: the wall time of a federated campaign on
//! real nodes, from its creation until every participant holds the model.
//!
//! Each node gets one organisation's rows: the CSV files of `--csv-dir`
//! (one per node, in name order, with a `schema.json` beside them) or, by
//! default, the synthetic non-IID operations data of
//! `mc_learn_core::synth` for the built-in `latency` features under a
//! declared model of `--hidden` layers. The campaign is created on node 0
//! with every node a participant; the report has the wall time, each
//! round's duration and how it closed (on node 0), whether every node ended
//! on one model hash, and the peak RSS of each node and of its learning
//! worker while the campaign ran.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mc_learn_core::schema::{self, ModelSchema};
use mc_learn_core::synth;
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Value, json};

use crate::cluster::{Cluster, ClusterOptions};

/// Polling interval of the campaign views and RSS.
const POLL: Duration = Duration::from_millis(50);

/// Parameters of one campaign run.
#[derive(Debug, Clone)]
pub struct CampaignOptions {
    pub cluster: ClusterOptions,
    pub rounds: u32,
    pub local_epochs: u32,
    pub batch_size: u32,
    pub learning_rate: f64,
    pub aggregation: String,
    /// `None`: the rule's default.
    pub drift_correction: Option<bool>,
    /// Hidden layers of the declared synthetic model.
    pub hidden: Vec<u32>,
    /// Synthetic rows per node (capped by the organisation's size).
    pub rows: usize,
    /// Seed of the synthetic data and of the campaign.
    pub seed: u64,
    /// One CSV per node and a `schema.json`, instead of synthetic data.
    pub csv_dir: Option<PathBuf>,
    pub round_deadline_s: f64,
    pub timeout: Duration,
    pub json_path: Option<PathBuf>,
}

/// One round as node 0 recorded it.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTime {
    pub round: u64,
    pub duration_ms: u64,
    pub closed_by: String,
    pub accepted: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub nodes: usize,
    pub model: String,
    pub params: usize,
    pub rows: Vec<u64>,
    pub rounds: u32,
    pub local_epochs: u32,
    pub local_steps: Option<u64>,
    pub drift_correction: Value,
    /// From the creation request to the last node's `completed`.
    pub wall_ms: f64,
    pub round_times: Vec<RoundTime>,
    /// Every node ended with the same model hash.
    pub one_model: bool,
    pub peak_node_rss_mb: Vec<f64>,
    pub peak_worker_rss_mb: Vec<f64>,
}

/// The model and the CSV of each node.
fn inputs(opts: &CampaignOptions, nodes: usize) -> Result<(ModelSchema, Vec<String>)> {
    if let Some(dir) = &opts.csv_dir {
        let schema_path = dir.join("schema.json");
        let schema: ModelSchema = serde_json::from_slice(
            &std::fs::read(&schema_path)
                .with_context(|| format!("reading {}", schema_path.display()))?,
        )
        .with_context(|| format!("{} is not a model schema", schema_path.display()))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        files.sort();
        if files.len() != nodes {
            bail!(
                "{} has {} CSV files; --nodes is {nodes}",
                dir.display(),
                files.len()
            );
        }
        let csvs = files
            .iter()
            .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
            .collect::<Result<_>>()?;
        return Ok((schema, csvs));
    }
    let mut schema = schema::builtin_named("latency").context("the latency schema")?;
    schema.name = "bench-latency".into();
    schema.hidden_layers = opts.hidden.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let orgs = synth::consortium(nodes, &mut rng);
    let mut csvs = Vec::new();
    for org in orgs {
        let mut org = org.clone();
        org.rows = org.rows.min(opts.rows);
        csvs.push(synth::generate(&org, &mut rng)?.to_csv());
    }
    Ok((schema, csvs))
}

async fn post(http: &reqwest::Client, url: String, body: Vec<u8>) -> Result<Value> {
    let r = http
        .post(&url)
        .body(body)
        .send()
        .await
        .context(url.clone())?;
    let status = r.status();
    let value: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {url}: {status} {value}");
    }
    Ok(value)
}

async fn get(http: &reqwest::Client, url: String) -> Result<Value> {
    let r = http.get(&url).send().await.context(url.clone())?;
    if !r.status().is_success() {
        bail!("GET {url}: {}", r.status());
    }
    Ok(r.json().await?)
}

/// Starts the cluster, loads the data, runs the campaign and measures it.
pub async fn run(opts: CampaignOptions) -> Result<CampaignReport> {
    let n = opts.cluster.nodes;
    if n == 0 || opts.rounds == 0 {
        bail!("bench campaign needs at least 1 node and 1 round");
    }
    let (schema, csvs) = inputs(&opts, n)?;
    eprintln!("starting {n} nodes");
    let mut cluster = Cluster::start(opts.cluster.clone()).await?;
    cluster.wait_connected(n - 1, opts.timeout).await?;
    let http = cluster.http()?;
    let bases: Vec<String> = cluster
        .clients()
        .iter()
        .map(|c| c.base_url().to_string())
        .collect();
    let mut rows = Vec::new();
    for (base, csv) in bases.iter().zip(&csvs) {
        post(
            &http,
            format!("{base}/v1/models"),
            serde_json::to_vec(&schema)?,
        )
        .await?;
        let url = format!(
            "{base}/v1/learn/import?model={}&replace=true&retrain_on_drift=false",
            schema.name
        );
        let report = post(&http, url, csv.clone().into_bytes()).await?;
        rows.push(report["total_rows"].as_u64().unwrap_or(0));
    }
    let peers: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|node| node.peer_id().to_string())
        .collect();
    let mut body = json!({
        "model": schema.name, "rounds": opts.rounds, "local_epochs": opts.local_epochs,
        "participants": peers, "aggregation": opts.aggregation,
        "round_deadline_s": opts.round_deadline_s, "batch_size": opts.batch_size,
        "learning_rate": opts.learning_rate, "seed": opts.seed,
    });
    if let Some(on) = opts.drift_correction {
        body["drift_correction"] = json!(on);
    }
    eprintln!(
        "campaign: {n} nodes, {} rows, {} rounds × {} local epochs, {} parameters",
        rows.iter().sum::<u64>(),
        opts.rounds,
        opts.local_epochs,
        schema.num_params()
    );
    let started = Instant::now();
    let created = post(
        &http,
        format!("{}/v1/campaigns", bases[0]),
        serde_json::to_vec(&body)?,
    )
    .await?;
    let id = created["id"].as_str().context("campaign id")?.to_string();
    let mut peak_node = vec![0u64; n];
    let mut peak_worker = vec![0u64; n];
    let mut last_round = 0;
    let mut tick = 0u64;
    // Node 0's view every POLL (the others only once node 0 completed) and
    // RSS every tenth: the bench's own requests must not load the nodes.
    let wall = loop {
        if tick.is_multiple_of(10) {
            for (i, base) in bases.iter().enumerate() {
                let worker = get(&http, format!("{base}/v1/learn/worker")).await?;
                peak_worker[i] = peak_worker[i].max(worker["rss_bytes"].as_u64().unwrap_or(0));
                if let Ok(rss) = cluster.node_mut(i).rss_bytes() {
                    peak_node[i] = peak_node[i].max(rss);
                }
            }
        }
        tick += 1;
        let view = get(&http, format!("{}/v1/campaigns/{id}", bases[0])).await?;
        if view["state"] == "completed" {
            let mut done = true;
            for base in &bases[1..] {
                let v = get(&http, format!("{base}/v1/campaigns/{id}")).await;
                done &= v.is_ok_and(|v| v["state"] == "completed");
            }
            if done {
                break started.elapsed();
            }
        }
        if started.elapsed() > opts.timeout {
            bail!(
                "the campaign did not complete on every node within {:?}",
                opts.timeout
            );
        }
        let round = view["current_round"].as_u64().unwrap_or(0);
        if round != last_round {
            eprintln!(
                "  round {round}/{} at {:.1} s",
                opts.rounds,
                started.elapsed().as_secs_f64()
            );
            last_round = round;
        }
        tokio::time::sleep(POLL).await;
    };
    let mut views = Vec::new();
    for base in &bases {
        views.push(get(&http, format!("{base}/v1/campaigns/{id}")).await?);
    }
    let round_times = views[0]["rounds"]
        .as_array()
        .map(|rounds| {
            rounds
                .iter()
                .map(|r| RoundTime {
                    round: r["round"].as_u64().unwrap_or(0),
                    duration_ms: r["duration_ms"].as_u64().unwrap_or(0),
                    closed_by: r["closed_by"].as_str().unwrap_or("").to_string(),
                    accepted: r["accepted"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let mb = |b: &u64| *b as f64 / (1024.0 * 1024.0);
    let report = CampaignReport {
        nodes: n,
        model: schema.name.clone(),
        params: schema.num_params(),
        rows,
        rounds: opts.rounds,
        local_epochs: opts.local_epochs,
        local_steps: views[0]["local_steps"].as_u64(),
        drift_correction: views[0]["spec"]["drift_correction"].clone(),
        wall_ms: wall.as_secs_f64() * 1e3,
        round_times,
        one_model: views
            .iter()
            .all(|v| v["model_hash"] == views[0]["model_hash"]),
        peak_node_rss_mb: peak_node.iter().map(mb).collect(),
        peak_worker_rss_mb: peak_worker.iter().map(mb).collect(),
    };
    if let Some(path) = &opts.json_path {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// The report as text.
pub fn render(r: &CampaignReport) -> String {
    let mut out = format!(
        "campaign: {} nodes, model {} ({} parameters), rows {:?}\n\
         {} rounds × {} local epochs ({} local steps a round), drift correction {}\n\
         wall {:.2} s from creation to the last node's completion; one model: {}\n",
        r.nodes,
        r.model,
        r.params,
        r.rows,
        r.rounds,
        r.local_epochs,
        r.local_steps.map_or("?".to_string(), |s| s.to_string()),
        r.drift_correction,
        r.wall_ms / 1e3,
        r.one_model
    );
    let model_rounds: Vec<&RoundTime> = r.round_times.iter().filter(|t| t.round > 0).collect();
    if !model_rounds.is_empty() {
        let mean = model_rounds.iter().map(|t| t.duration_ms).sum::<u64>() as f64
            / model_rounds.len() as f64;
        let max = model_rounds
            .iter()
            .map(|t| t.duration_ms)
            .max()
            .unwrap_or(0);
        let deadline = r
            .round_times
            .iter()
            .filter(|t| t.closed_by == "deadline")
            .count();
        out.push_str(&format!(
            "model rounds: mean {mean:.0} ms, max {max} ms; round 0 {} ms; {deadline} closed at the deadline\n",
            r.round_times.first().map_or(0, |t| t.duration_ms)
        ));
    }
    out.push_str(&format!(
        "peak RSS per node {:?} MB; per learning worker {:?} MB\n",
        r.peak_node_rss_mb
            .iter()
            .map(|m| m.round())
            .collect::<Vec<_>>(),
        r.peak_worker_rss_mb
            .iter()
            .map(|m| m.round())
            .collect::<Vec<_>>()
    ));
    out
}
