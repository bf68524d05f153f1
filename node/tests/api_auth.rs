//! Real-process tests of API authentication: every mutating route refuses a
//! call without a token (401 `unauthorized`), a token below the route's role
//! gets 403 `forbidden`, a revoked token is refused within a second, tokens
//! survive a restart, and a node started without `MC_ADMIN_TOKEN` creates one
//! admin token in a private file and prints it once.
//!
//! # Layout
//!
//! - `node_with_own_token` — one node that makes its own admin token.
//! - `create_token` — `POST /v1/tokens` as the admin.
//! - one `#[tokio::test]` per behaviour.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use mc_testnet::{NodeClient, NodeConfig, NodeProcess};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every mutating route of the API (method, path).
const MUTATING: &[(&str, &str)] = &[
    ("PUT", "/v1/knowledge/a"),
    ("DELETE", "/v1/knowledge/a"),
    ("POST", "/v1/models"),
    ("POST", "/v1/learn/import?model=latency"),
    ("POST", "/v1/models/latency/train"),
    ("POST", "/v1/models/latency/transfer"),
    ("POST", "/v1/campaigns"),
    ("POST", "/v1/campaigns/abab/updates"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/tokens/0000"),
];

async fn node_with_own_token(dir: &Path) -> Result<NodeProcess> {
    let mut config = NodeConfig::new("us-east", dir.join("us-east"));
    config.admin_token = None;
    NodeProcess::start(Path::new(env!("CARGO_BIN_EXE_mc-node")), config).await
}

async fn create_token(admin: &NodeClient, name: &str, role: &str) -> Result<(String, String)> {
    let body = serde_json::to_vec(&json!({"name": name, "role": role}))?;
    let r = admin
        .request_raw_body(Method::POST, "/v1/tokens", body)
        .await?;
    ensure!(r.status == StatusCode::CREATED, "{}", r.text());
    let view: Value = r.json()?;
    let field = |k: &str| view[k].as_str().map(str::to_owned).context(k.to_owned());
    Ok((field("id")?, field("token")?))
}

fn assert_error(r: &mc_testnet::RawResponse, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body: Value = r.json().expect("a JSON error body");
    assert_eq!(body["error"], code, "{body}");
}

#[tokio::test]
async fn calls_without_a_valid_token_are_refused_and_change_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node_with_own_token(dir.path()).await?;
    let admin = node.client().clone();
    admin.put("a", &json!({"kept": 1})).await?;
    let anonymous = admin.anonymous();
    let forged = admin
        .clone()
        .with_token("mc_00000000000000000000000000000000");
    for (method, path) in MUTATING {
        let method: Method = method.parse()?;
        for client in [&anonymous, &forged] {
            let r = client
                .request_raw_body(method.clone(), path, b"{}".to_vec())
                .await?;
            assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    // Reads need a token too, unless configured open; /healthz never does.
    let r = anonymous.request_raw(Method::GET, "/status").await?;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = anonymous.request_raw(Method::GET, "/healthz").await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let entry = admin.get("a").await?.context("the entry is gone")?;
    assert_eq!(entry.value, json!({"kept": 1}));
    assert_eq!(admin.list("").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn roles_limit_what_a_token_may_do() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let node = node_with_own_token(dir.path()).await?;
    let admin = node.client().clone();
    let (_, reader) = create_token(&admin, "dashboard", "reader").await?;
    let (_, writer) = create_token(&admin, "agent", "writer").await?;
    let reader = admin.clone().with_token(reader);
    let writer = admin.clone().with_token(writer);

    let r = reader
        .put_raw("k", b"1".to_vec(), "application/json")
        .await?;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(reader.get("k").await?.is_none());
    writer.put("k", &json!(1)).await?;
    assert_eq!(reader.get("k").await?.context("written")?.value, json!(1));
    let r = writer
        .request_raw_body(Method::POST, "/v1/campaigns", b"{}".to_vec())
        .await?;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let r = writer.request_raw(Method::GET, "/v1/tokens").await?;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let me: Value = writer
        .request_raw(Method::GET, "/v1/whoami")
        .await?
        .json()?;
    assert_eq!(me["role"], "writer", "{me}");
    assert!(
        me.get("token").is_none() && me.get("hash").is_none(),
        "{me}"
    );

    // Bad token requests are typed errors; the last admin cannot be revoked.
    let bad = admin
        .request_raw_body(
            Method::POST,
            "/v1/tokens",
            br#"{"name":"x","role":"root"}"#.to_vec(),
        )
        .await?;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_json");
    let tokens: Value = admin.request_raw(Method::GET, "/v1/tokens").await?.json()?;
    let admin_id = tokens
        .as_array()
        .context("a list")?
        .iter()
        .find(|t| t["role"] == "admin")
        .and_then(|t| t["id"].as_str())
        .context("an admin token")?
        .to_owned();
    let r = admin
        .request_raw(Method::DELETE, &format!("/v1/tokens/{admin_id}"))
        .await?;
    assert_error(&r, StatusCode::CONFLICT, "last_admin");
    Ok(())
}

#[tokio::test]
async fn a_revoked_token_is_refused_within_a_second_and_after_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = node_with_own_token(dir.path()).await?;
    let admin = node.client().clone();
    let (id, secret) = create_token(&admin, "ci", "writer").await?;
    let writer = admin.clone().with_token(secret.clone());
    writer.put("before", &json!(true)).await?;
    let revoked_at = Instant::now();
    let r = admin
        .request_raw(Method::DELETE, &format!("/v1/tokens/{id}"))
        .await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    loop {
        let r = writer
            .request_raw(Method::GET, "/v1/knowledge/before")
            .await?;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "the revoked token still works: {}",
            r.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_, kept) = create_token(&admin, "kept", "reader").await?;
    node.restart().await?;
    let admin = node.client().clone();
    let r = admin
        .clone()
        .with_token(secret)
        .request_raw(Method::GET, "/status")
        .await?;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = admin
        .clone()
        .with_token(kept)
        .request_raw(Method::GET, "/status")
        .await?;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(admin.get("before").await?.is_some());
    Ok(())
}

#[tokio::test]
async fn a_first_start_writes_one_private_admin_token_and_prints_it_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut node = node_with_own_token(dir.path()).await?;
    let path = node.data_dir().join("admin.token");
    let token = std::fs::read_to_string(&path)?.trim().to_owned();
    assert!(token.starts_with("mc_") && token.len() == 35, "{token}");
    assert_eq!(
        std::fs::metadata(&path)?.permissions().mode() & 0o777,
        0o600
    );
    node.restart().await?;
    assert_eq!(std::fs::read_to_string(&path)?.trim(), token, "replaced");
    node.client().status().await?;
    let log = std::fs::read_to_string(node.log_path())?;
    let printed = log.lines().filter(|l| l.contains(&token)).count();
    assert_eq!(printed, 1, "printed {printed} times:\n{log}");
    Ok(())
}
