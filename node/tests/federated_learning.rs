//! Federated learning end to end on three real `mc-node` processes.
//!
//! # Layout
//!
//! - `import_org_data` — each node gets one synthetic organisation's rows
//!   (non-IID: different loads and volumes) through `POST /v1/learn/import`.
//! - `a_campaign_completes_with_identical_weights_everywhere` — a FedAvg
//!   campaign created on one node runs on all three; every node ends with
//!   the same model hash, the same per-round accepted-set digests and
//!   byte-identical weights from `GET /v1/models/latency/weights`; the
//!   campaign's batch size and learning rate (one given, one defaulted) and
//!   its local steps show in its view.
//! - `forged_and_foreign_updates_are_rejected` — the test holds a member's
//!   key: a genuine update is accepted (202), the same update with its
//!   weights changed after signing and an update signed by a non-member are
//!   refused (422) and counted; the silent member does not stall the
//!   campaign, whose rounds close at their deadline. Bad training settings
//!   (batch size, learning rate) are a clear 400.
//! - `a_member_killed_mid_campaign_catches_up_after_restart` — one node is
//!   killed (SIGKILL, by pid) after the first model round; the other two go
//!   on, closing rounds at their deadline; restarted on its data dir, the
//!   node sees a majority sign updates on a later round's model, takes that
//!   state from one of them and finishes the campaign with byte-identical
//!   weights.
//! - `a_worker_killed_mid_round_is_replaced_and_the_campaign_completes` —
//!   one node's learning worker is SIGKILLed (by the pid the node reports)
//!   while it trains a round; the node starts a fresh one, the job is run
//!   again, and every round still accepts all three members' updates.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use mc_core::learning::DEFAULT_CAMPAIGN_LR;
use mc_learn_core::ed25519_dalek::SigningKey;
use mc_learn_core::synth;
use mc_learn_core::{CampaignId, model_hash};
use mc_testnet::{Cluster, wait_until};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use serde_json::{Value, json};

mod common;

const START: Duration = Duration::from_secs(30);
const CAMPAIGN: Duration = Duration::from_secs(240);
const POLL: Duration = Duration::from_millis(200);
/// Polling for a busy worker: rounds of the kill test take about a second.
const KILL_POLL: Duration = Duration::from_millis(20);
/// Rows per organisation, enough to learn from and quick to train on.
const MAX_ROWS: usize = 1_200;

fn base(cluster: &Cluster, i: usize) -> String {
    cluster.clients()[i].base_url().to_string()
}

async fn post(http: &reqwest::Client, url: String, body: Vec<u8>) -> Result<(u16, Value)> {
    let r = http.post(&url).body(body).send().await.context(url)?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn get(http: &reqwest::Client, url: String) -> Result<Value> {
    let r = http.get(&url).send().await.context(url.clone())?;
    if !r.status().is_success() {
        bail!("GET {url}: {}", r.status());
    }
    Ok(r.json().await?)
}

async fn import_org_data(cluster: &Cluster, http: &reqwest::Client) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let orgs = synth::consortium(3, &mut rng);
    for (i, org) in orgs.iter().enumerate() {
        let mut org = org.clone();
        org.rows = org.rows.min(MAX_ROWS);
        let table = synth::generate(&org, &mut rng)?;
        let url = format!("{}/v1/learn/import?model=latency", base(cluster, i));
        let (status, body) = post(http, url, table.to_csv().into_bytes()).await?;
        assert_eq!(status, 200, "import on node {i}: {body}");
        assert_eq!(body["imported_rows"].as_u64(), Some(table.len() as u64));
    }
    Ok(())
}

async fn wait_completed(
    cluster: &Cluster,
    http: &reqwest::Client,
    id: &str,
    nodes: &[usize],
) -> Result<Vec<Value>> {
    wait_until(
        "campaign completed on every participant",
        CAMPAIGN,
        POLL,
        async || {
            for &i in nodes {
                let v = get(http, format!("{}/v1/campaigns/{id}", base(cluster, i))).await?;
                if v["state"] != "completed" {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await?;
    let mut views = Vec::new();
    for &i in nodes {
        views.push(get(http, format!("{}/v1/campaigns/{id}", base(cluster, i))).await?);
    }
    Ok(views)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_completes_with_identical_weights_everywhere() -> Result<()> {
    let cluster = common::three_nodes(START).await?;
    let http = cluster.http()?;
    import_org_data(&cluster, &http).await?;
    let peers: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.peer_id().to_string())
        .collect();
    let body = json!({
        "model": "latency", "rounds": 3, "local_epochs": 2, "participants": peers,
        "aggregation": "fedavg", "round_deadline_s": 60.0, "batch_size": 32,
    });
    let url = format!("{}/v1/campaigns", base(&cluster, 0));
    let (status, created) = post(&http, url, serde_json::to_vec(&body)?).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().context("campaign id")?.to_string();

    let views = wait_completed(&cluster, &http, &id, &[0, 1, 2]).await?;
    let hash = &views[0]["model_hash"];
    assert!(hash.is_string());
    for v in &views {
        assert_eq!(&v["model_hash"], hash);
        // Given batch size, default learning rate; every member ran 2 epochs
        // of the median member's rows.
        assert_eq!(v["spec"]["batch_size"], 32, "{v}");
        assert_eq!(
            v["spec"]["learning_rate"].as_f64(),
            Some(DEFAULT_CAMPAIGN_LR)
        );
        let reference = v["reference_count"].as_u64().context("reference_count")?;
        assert!(reference > 0 && reference <= MAX_ROWS as u64, "{v}");
        assert_eq!(
            v["local_steps"].as_u64(),
            Some(2 * reference.div_ceil(32)),
            "{v}"
        );
        assert_eq!(v["reference_count"], views[0]["reference_count"]);
        assert_eq!(v["rounds"].as_array().map(Vec::len), Some(4), "{v}");
        for round in v["rounds"].as_array().unwrap() {
            assert_eq!(round["accepted"], 3, "{round}");
        }
    }
    let digests = |v: &Value| -> Vec<Value> {
        v["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["accepted_digest"].clone())
            .collect()
    };
    assert_eq!(digests(&views[0]), digests(&views[1]));
    assert_eq!(digests(&views[0]), digests(&views[2]));

    // The finished model is stored as the active version on every node.
    let mut weights = Vec::new();
    for i in 0..3 {
        let url = format!("{}/v1/models/latency/weights", base(&cluster, i));
        wait_until("federated version stored", START, POLL, async || {
            Ok(http.get(&url).send().await?.status().is_success())
        })
        .await?;
        weights.push(http.get(&url).send().await?.bytes().await?.to_vec());
    }
    assert!(weights[0].len() > 1000);
    for i in 1..3 {
        let first_difference = weights[0].iter().zip(&weights[i]).position(|(a, b)| a != b);
        assert!(
            weights[0] == weights[i],
            "weights of nodes 0 and {i} differ: {} vs {} bytes, first difference at byte {first_difference:?}",
            weights[0].len(),
            weights[i].len(),
        );
    }

    // /status shows the campaign; performance reports on local data.
    let status = get(&http, format!("{}/status", base(&cluster, 1))).await?;
    assert_eq!(status["learning"]["campaigns"][0]["state"], "completed");
    let perf = get(
        &http,
        format!("{}/v1/models/latency/performance", base(&cluster, 2)),
    )
    .await?;
    assert!(perf["accuracy"].as_f64().is_some(), "{perf}");
    assert!(
        perf["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("federated:")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_foreign_updates_are_rejected() -> Result<()> {
    let cluster = common::three_nodes(START).await?;
    let http = cluster.http()?;
    import_org_data(&cluster, &http).await?;
    // The test is a member too: its libp2p-style ed25519 key names a peer id.
    let member = SigningKey::from_bytes(&[7; 32]);
    let member_peer = {
        let kp = libp2p::identity::Keypair::ed25519_from_bytes([7; 32])?;
        kp.public().to_peer_id().to_string()
    };
    let peers = vec![
        cluster.node(0).peer_id().to_string(),
        cluster.node(1).peer_id().to_string(),
        member_peer,
    ];
    let body = json!({
        "model": "latency", "rounds": 1, "local_epochs": 1, "participants": peers,
        "aggregation": "median", "round_deadline_s": 20.0,
    });
    // Training settings out of range are refused with a clear 400.
    for (field, value) in [
        ("batch_size", json!(0)),
        ("batch_size", json!(65_537)),
        ("learning_rate", json!(0.0)),
        ("learning_rate", json!(-0.1)),
        ("learning_rate", json!(10.5)),
        ("init", json!("xavier")),
    ] {
        let mut bad = body.clone();
        bad[field] = value.clone();
        let (status, answer) = post(
            &http,
            format!("{}/v1/campaigns", base(&cluster, 0)),
            serde_json::to_vec(&bad)?,
        )
        .await?;
        assert_eq!(status, 400, "{field} = {value}: {answer}");
        assert_eq!(answer["error"], "invalid_campaign", "{answer}");
        assert!(
            answer["detail"].as_str().unwrap_or("").contains(field),
            "{answer}"
        );
    }
    let (status, created) = post(
        &http,
        format!("{}/v1/campaigns", base(&cluster, 0)),
        serde_json::to_vec(&body)?,
    )
    .await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().context("campaign id")?.to_string();
    let campaign = CampaignId(
        hex::decode(&id)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("id length"))?,
    );
    let moments_len = 2 * 7 + 2;
    let empty = model_hash(&[]);
    let submit = format!("{}/v1/campaigns/{id}/updates", base(&cluster, 0));

    // Signed by a key that is not a participant.
    let outsider = SigningKey::from_bytes(&[8; 32]);
    let foreign =
        mc_learn_core::update::sign(&outsider, campaign, 0, empty, 50, vec![1.0; moments_len])?;
    let (status, answer) = post(&http, submit.clone(), foreign.encode()).await?;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not a participant"),
        "{answer}"
    );
    assert_eq!(answer["errors"][0]["reason"], "not_participant", "{answer}");

    // A member's update whose weights were changed after signing.
    let mut tampered =
        mc_learn_core::update::sign(&member, campaign, 0, empty, 50, vec![1.0; moments_len])?;
    tampered.weights[3] = 1e6;
    let (status, answer) = post(&http, submit.clone(), tampered.encode()).await?;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap_or("").contains("hash"),
        "{answer}"
    );

    // Garbage is a clear 400, not a crash.
    let (status, answer) = post(&http, submit.clone(), vec![0xff; 10]).await?;
    assert_eq!(status, 400, "{answer}");

    // The member's genuine moments are accepted.
    let genuine = mc_learn_core::update::sign(
        &member,
        campaign,
        0,
        empty,
        50,
        (0..moments_len).map(|i| i as f32).collect(),
    )?;
    let (status, answer) = post(&http, submit, genuine.encode()).await?;
    assert_eq!(status, 202, "round 0 is open for 20 s: {answer}");

    // The member never trains: rounds close at their deadline and the
    // campaign still completes on both node participants.
    let views = wait_completed(&cluster, &http, &id, &[0, 1]).await?;
    let rejections = &views[0]["rejections"];
    assert_eq!(rejections["not_participant"], 1, "{}", views[0]);
    assert_eq!(rejections["weights_mismatch"], 1, "{}", views[0]);
    // Round 0 had the member's moments on node 0; in the model round the
    // silent member is missing and the two nodes' updates, each well inside
    // the 20 s deadline, are the accepted set on both: the same model.
    // (node 0 relayed the moments to node 1).
    for v in &views {
        assert_eq!(v["rounds"][0]["accepted"], 3, "{v}");
    }
    for v in &views {
        let last = &v["rounds"][1];
        assert_eq!(last["accepted"], 2, "{v}");
        assert_eq!(last["missing"], 1, "{v}");
        assert_eq!(last["closed_by"], "deadline", "{v}");
    }
    assert_eq!(
        views[0]["rounds"][1]["accepted_digest"],
        views[1]["rounds"][1]["accepted_digest"]
    );
    assert_eq!(views[0]["model_hash"], views[1]["model_hash"]);
    // Node 2 is not a participant: it knows the campaign and only observes.
    let observer_url = format!("{}/v1/campaigns/{id}", base(&cluster, 2));
    wait_until("the observer knows the campaign", START, POLL, async || {
        Ok(get(&http, observer_url.clone()).await.is_ok())
    })
    .await?;
    let observer = get(&http, observer_url).await?;
    assert_eq!(observer["state"], "observing", "{observer}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_mid_campaign_catches_up_after_restart() -> Result<()> {
    let mut cluster = common::three_nodes(START).await?;
    let http = cluster.http()?;
    import_org_data(&cluster, &http).await?;
    let peers: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.peer_id().to_string())
        .collect();
    // Short deadlines: the two survivors close each round without the dead
    // node after 3 s; enough rounds that they are still running when it
    // comes back.
    let body = json!({
        "model": "latency", "rounds": 16, "local_epochs": 1, "participants": peers,
        "aggregation": "fedavg", "round_deadline_s": 3.0, "batch_size": 64,
    });
    let url = format!("{}/v1/campaigns", base(&cluster, 0));
    let (status, created) = post(&http, url, serde_json::to_vec(&body)?).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().context("campaign id")?.to_string();
    let round_of = async |cluster: &Cluster, i: usize| -> Result<u64> {
        let v = get(&http, format!("{}/v1/campaigns/{id}", base(cluster, i))).await?;
        Ok(v["current_round"].as_u64().unwrap_or(0))
    };

    let victim = 2;
    wait_until("the first model round closed", CAMPAIGN, POLL, async || {
        Ok(round_of(&cluster, victim).await? >= 2)
    })
    .await?;
    let left_at = round_of(&cluster, victim).await?;
    cluster.node_mut(victim).kill_hard()?;
    wait_until(
        "the survivors two rounds further",
        CAMPAIGN,
        POLL,
        async || Ok(round_of(&cluster, 0).await? >= left_at + 2),
    )
    .await?;
    cluster.node_mut(victim).restart().await?;

    let views = wait_completed(&cluster, &http, &id, &[0, 1, 2]).await?;
    let caught_up = views[victim]["caught_up"].as_array().context("caught_up")?;
    assert!(!caught_up.is_empty(), "{}", views[victim]);
    assert!(
        caught_up[0]["to_round"].as_u64() > caught_up[0]["from_round"].as_u64(),
        "{caught_up:?}"
    );
    for v in &views {
        assert_eq!(v["model_hash"], views[0]["model_hash"], "{v}");
    }
    let mut weights = Vec::new();
    for i in 0..3 {
        let url = format!("{}/v1/models/latency/weights", base(&cluster, i));
        wait_until("federated version stored", START, POLL, async || {
            Ok(http.get(&url).send().await?.status().is_success())
        })
        .await?;
        weights.push(http.get(&url).send().await?.bytes().await?.to_vec());
    }
    assert!(weights[0] == weights[1] && weights[0] == weights[2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_round_is_replaced_and_the_campaign_completes() -> Result<()> {
    let cluster = common::three_nodes(START).await?;
    let http = cluster.http()?;
    import_org_data(&cluster, &http).await?;
    let peers: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.peer_id().to_string())
        .collect();
    // Long rounds (many local epochs) and a deadline that leaves room for a
    // retry, so that every member's update of every round is accepted.
    let body = json!({
        "model": "latency", "rounds": 3, "local_epochs": 20, "participants": peers,
        "aggregation": "fedavg", "round_deadline_s": 120.0, "batch_size": 32,
    });
    let url = format!("{}/v1/campaigns", base(&cluster, 0));
    let (status, created) = post(&http, url, serde_json::to_vec(&body)?).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().context("campaign id")?.to_string();

    let worker_url = format!("{}/v1/learn/worker", base(&cluster, 1));
    let mut busy_pid = 0;
    wait_until(
        "node 1's worker busy in a round",
        CAMPAIGN,
        KILL_POLL,
        async || {
            let w = get(&http, worker_url.clone()).await?;
            if w["busy"] == true
                && let Some(pid) = w["pid"].as_u64()
            {
                busy_pid = pid as u32;
                return Ok(true);
            }
            Ok(false)
        },
    )
    .await?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(busy_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;

    let views = wait_completed(&cluster, &http, &id, &[0, 1, 2]).await?;
    for v in &views {
        assert_eq!(v["model_hash"], views[0]["model_hash"], "{v}");
        for round in v["rounds"].as_array().context("rounds")? {
            assert_eq!(round["accepted"], 3, "{round}");
        }
    }
    let after = get(&http, worker_url).await?;
    assert!(after["died"].as_u64() >= Some(1), "{after}");
    assert!(after["started"].as_u64() >= Some(2), "{after}");
    Ok(())
}
