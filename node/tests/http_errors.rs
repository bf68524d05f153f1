//! Real-process tests of the HTTP API's error answers: malformed JSON (400
//! `invalid_json`), bodies over 1 MiB (413 `payload_too_large`), missing keys
//! (404 `not_found`), bad keys (400 `invalid_key`), bad queries (400
//! `invalid_query`), unknown paths (404 `no_route`) and wrong methods (405
//! `method_not_allowed`) all answer a JSON `{"error", "detail"}` object with
//! the documented code and leave the stored knowledge unchanged.
//!
//! # Layout
//!
//! - `seeded_node` — one node with a few known entries.
//! - `assert_api_error` — checks the status code and the error body shape.
//! - `assert_unchanged` — compares the full listing with the one taken
//!   before the bad request.
//! - one `#[tokio::test]` per kind of error, plus the size boundary.

use std::time::Duration;

use anyhow::{Context, Result};
use mc_testnet::{ApiError, Cluster, ClusterOptions, Entry, NodeClient, RawResponse};
use reqwest::{Method, StatusCode};
use serde_json::json;

const MIB: usize = 1024 * 1024;

async fn seeded_node() -> Result<(Cluster, Vec<Entry>)> {
    let mut opts = ClusterOptions::new(1).node_bin(env!("CARGO_BIN_EXE_mc-node"));
    opts.ready_timeout = Duration::from_secs(60);
    let cluster = Cluster::start(opts).await.context("starting a node")?;
    let client = cluster.node(0).client();
    client
        .put("ground/houston", &json!({"role": "mission control"}))
        .await?;
    client
        .put("ground/kourou", &json!({"role": "launch site", "lat": 5.2}))
        .await?;
    client.put("orbit/iss", &json!(408)).await?;
    let before = client.list("").await?;
    assert_eq!(before.len(), 3, "seeded entries: {before:?}");
    Ok((cluster, before))
}

/// Checks the status, the JSON content type, the documented error `code` and
/// a non-empty detail.
fn assert_api_error(
    resp: &RawResponse,
    status: StatusCode,
    code: &str,
    what: &str,
) -> Result<ApiError> {
    assert_eq!(resp.status, status, "{what}: body {}", resp.text());
    let content_type = resp.content_type.as_deref().unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content-type {content_type:?}"
    );
    let err = resp
        .api_error()
        .with_context(|| format!("{what}: error body"))?;
    assert_eq!(err.error, code, "{what}: error code");
    assert!(!err.detail.is_empty(), "{what}: empty detail");
    Ok(err)
}

async fn assert_unchanged(client: &NodeClient, before: &[Entry], what: &str) -> Result<()> {
    let after = client.list("").await?;
    assert_eq!(after, before, "{what} changed the stored entries");
    Ok(())
}

async fn stop(mut cluster: Cluster) -> Result<()> {
    let stopped = cluster.node_mut(0).stop().await?;
    assert!(stopped.is_graceful(), "{stopped:?}");
    Ok(())
}

#[tokio::test]
async fn malformed_json_is_a_400_and_changes_nothing() -> Result<()> {
    let (cluster, before) = seeded_node().await?;
    let client = cluster.node(0).client();
    let bodies: [&[u8]; 5] = [
        b"{\"role\": ",
        b"not json at all",
        b"",
        b"{\"a\": 1}}",
        b"[1, 2,]",
    ];
    for body in bodies {
        let what = format!("PUT of {:?}", String::from_utf8_lossy(body));
        // A new key and an existing one: neither may be created or touched.
        for key in ["ground/baikonur", "ground/houston"] {
            let resp = client
                .put_raw(key, body.to_vec(), "application/json")
                .await?;
            assert_api_error(&resp, StatusCode::BAD_REQUEST, "invalid_json", &what)?;
        }
        assert_eq!(
            client.get("ground/baikonur").await?,
            None,
            "{what} created the key"
        );
        assert_unchanged(client, &before, &what).await?;
    }
    stop(cluster).await
}

#[tokio::test]
async fn a_body_over_one_mib_is_a_413_and_changes_nothing() -> Result<()> {
    let (mut cluster, before) = seeded_node().await?;
    let client = &cluster.node(0).client().clone();
    // A valid JSON string, one byte over the limit in total.
    let body = format!("\"{}\"", "x".repeat(MIB - 1)).into_bytes();
    assert_eq!(body.len(), MIB + 1);
    for key in ["telemetry/huge", "orbit/iss"] {
        let resp = client
            .put_raw(key, body.clone(), "application/json")
            .await?;
        assert_api_error(
            &resp,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "PUT of 1 MiB + 1 byte",
        )?;
    }
    assert_eq!(client.get("telemetry/huge").await?, None);
    assert_unchanged(client, &before, "an oversized PUT").await?;

    // Far over the limit: the node answers 413 after reading 1 MiB and then
    // closes the connection, so the client may hit EPIPE/ECONNRESET while
    // still sending and never see the answer. Either way the write must not
    // succeed, and the node must stay up and unchanged.
    let huge = client
        .put_raw("telemetry/huger", vec![b' '; 8 * MIB], "application/json")
        .await;
    match &huge {
        Ok(resp) => {
            assert_api_error(
                resp,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "PUT of 8 MiB",
            )?;
        }
        Err(e) => {
            let io = e
                .chain()
                .any(|c| c.downcast_ref::<reqwest::Error>().is_some());
            assert!(
                io,
                "PUT of 8 MiB failed other than at the connection: {e:#}"
            );
        }
    }
    assert!(
        cluster.node_mut(0).is_running(),
        "the node died on an 8 MiB PUT"
    );
    client
        .status()
        .await
        .context("the node is unhealthy after an 8 MiB PUT")?;
    assert_unchanged(client, &before, "an 8 MiB PUT").await?;
    stop(cluster).await
}

#[tokio::test]
async fn a_body_of_exactly_one_mib_is_accepted() -> Result<()> {
    let (cluster, before) = seeded_node().await?;
    let client = cluster.node(0).client();
    let payload = "y".repeat(MIB - 2);
    let body = format!("\"{payload}\"").into_bytes();
    assert_eq!(body.len(), MIB);
    let resp = client
        .put_raw("telemetry/big", body, "application/json")
        .await?;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
    );
    let stored = client
        .get("telemetry/big")
        .await?
        .context("the 1 MiB entry is missing")?;
    assert_eq!(stored.value, json!(payload));
    let after = client.list("").await?;
    assert_eq!(after.len(), before.len() + 1);
    let others: Vec<Entry> = after
        .into_iter()
        .filter(|e| e.key != "telemetry/big")
        .collect();
    assert_eq!(others, before, "the other entries are untouched");
    stop(cluster).await
}

#[tokio::test]
async fn missing_keys_are_404_with_a_json_error() -> Result<()> {
    let (cluster, before) = seeded_node().await?;
    let client = cluster.node(0).client();
    for key in ["ground/baikonur", "ground/houston/annex", "nothing"] {
        let path = format!("/v1/knowledge/{}", mc_testnet::client::encode_segment(key));
        let resp = client.request_raw(Method::GET, &path).await?;
        assert_api_error(
            &resp,
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("GET {key}"),
        )?;
        assert_eq!(client.get(key).await?, None);

        let resp = client.request_raw(Method::DELETE, &path).await?;
        assert_api_error(
            &resp,
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("DELETE {key}"),
        )?;
        assert_unchanged(client, &before, &format!("GET/DELETE of missing {key}")).await?;
    }
    stop(cluster).await
}

#[tokio::test]
async fn bad_keys_queries_paths_and_methods_answer_their_documented_codes() -> Result<()> {
    let (cluster, before) = seeded_node().await?;
    let client = cluster.node(0).client();
    let long_key = "k".repeat(1025);
    let cases = [
        (
            Method::PUT,
            "/v1/knowledge/bad%01key".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_key",
        ),
        (
            Method::GET,
            "/v1/knowledge/bad%0Akey".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_key",
        ),
        (
            Method::PUT,
            format!("/v1/knowledge/{long_key}"),
            StatusCode::BAD_REQUEST,
            "invalid_key",
        ),
        (
            Method::GET,
            "/v1/knowledge?prefix=a&prefix=b".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            Method::GET,
            "/v2/nothing".to_owned(),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            Method::GET,
            "/".to_owned(),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            Method::POST,
            "/v1/knowledge/ground/houston".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/status".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, status, code) in cases {
        let what = format!("{method} {}", &path[..path.len().min(60)]);
        let resp = if method == Method::PUT {
            client
                .request_raw_body(method, &path, b"1".to_vec())
                .await?
        } else {
            client.request_raw(method, &path).await?
        };
        assert_api_error(&resp, status, code, &what)?;
        assert_unchanged(client, &before, &what).await?;
    }
    stop(cluster).await
}
