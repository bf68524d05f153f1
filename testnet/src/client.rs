//! Async HTTP client for one node's API, and the API's wire types.
//!
//! Keys are percent-encoded into a single path segment (so `a/b` becomes
//! `a%2Fb`); the prefix of a listing goes into the query string.

use std::fmt;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One knowledge entry, as the node returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub value: Value,
    /// Peer id of the node that wrote the value.
    pub author: String,
    /// Unix time of the write, in milliseconds.
    pub updated_at: u64,
}

/// `GET /status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub peer_id: String,
    pub region: String,
    pub version: String,
    pub uptime_s: f64,
    pub http_addr: String,
    pub listen_addrs: Vec<String>,
    pub gossip_enabled: bool,
    pub peers: Vec<PeerStatus>,
    pub knowledge: KnowledgeStatus,
}

/// One peer in [`Status::peers`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub peer_id: String,
    pub region: Option<String>,
    pub last_sync_ms: Option<u64>,
    pub in_sync: bool,
}

/// [`Status::knowledge`]: a summary of the node's CRDT document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnowledgeStatus {
    pub entries: u64,
    pub heads: Vec<String>,
    pub changes: u64,
    pub doc_bytes: u64,
}

/// The JSON body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub detail: String,
}

/// An unexpected HTTP status; downcast an `anyhow::Error` to inspect it.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub method: Method,
    pub url: String,
    pub status: StatusCode,
    pub body: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} answered {}: {}",
            self.method, self.url, self.status, self.body
        )
    }
}

impl std::error::Error for ApiFailure {}

/// A response kept verbatim, for tests of error handling.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Parses the body as JSON of type `T`.
    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "body of a {} answer is not the expected JSON: {}",
                self.status,
                self.text()
            )
        })
    }

    /// Parses the body as the API's `{"error", "detail"}` object.
    pub fn api_error(&self) -> Result<ApiError> {
        self.json()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Percent-encodes `key` as one URL path segment: everything except RFC 3986
/// unreserved characters is escaped, `/` included.
pub fn encode_segment(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Client for one node at `http://ADDR`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A new random API token in the node's format (`mc_` and 32 hex digits).
pub fn random_token() -> String {
    let bits: u128 = rand::random();
    format!("mc_{bits:032x}")
}

/// A reqwest client that sends `Authorization: Bearer TOKEN` on every
/// request (for tests that build their own requests). Proxies are ignored.
pub fn authed_http(token: &str) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .context("the token is not a valid header value")?;
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .build()
        .context("building the HTTP client")
}

impl NodeClient {
    /// A client for the node whose HTTP API listens on `http_addr`
    /// (`127.0.0.1:PORT`). Requests time out after 30 s; proxies are ignored.
    pub fn new(http_addr: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self::with_client(http, http_addr))
    }

    /// A client that shares an existing reqwest connection pool.
    pub fn with_client(http: reqwest::Client, http_addr: &str) -> Self {
        Self {
            http,
            base: format!("http://{http_addr}"),
            token: None,
        }
    }

    /// The same client, sending `Authorization: Bearer TOKEN` on every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same client without a token (to check what anonymous callers get).
    pub fn anonymous(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `http://ADDR/v1/knowledge/{encoded key}`.
    pub fn knowledge_url(&self, key: &str) -> String {
        format!("{}/v1/knowledge/{}", self.base, encode_segment(key))
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Status> {
        let url = format!("{}/status", self.base);
        let resp = self.send(Method::GET, &url, None).await?;
        json_body(resp, Method::GET, &url, StatusCode::OK).await
    }

    /// `PUT /v1/knowledge/{key}` with `value` as the JSON body; returns the
    /// stored entry (the node answers once the write is durable).
    pub async fn put(&self, key: &str, value: &Value) -> Result<Entry> {
        let url = self.knowledge_url(key);
        let body = serde_json::to_vec(value).context("serialising the value")?;
        let resp = self
            .send(Method::PUT, &url, Some((body, "application/json")))
            .await?;
        json_body(resp, Method::PUT, &url, StatusCode::OK).await
    }

    /// `GET /v1/knowledge/{key}`; `None` on 404.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>> {
        let url = self.knowledge_url(key);
        let resp = self.send(Method::GET, &url, None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        json_body(resp, Method::GET, &url, StatusCode::OK)
            .await
            .map(Some)
    }

    /// `DELETE /v1/knowledge/{key}`; `true` on 204, `false` on 404.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let url = self.knowledge_url(key);
        let resp = self.send(Method::DELETE, &url, None).await?;
        match resp.status() {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(failure(resp, Method::DELETE, &url).await.into()),
        }
    }

    /// `GET /v1/knowledge?prefix=P` (all entries for an empty prefix).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        let url = format!(
            "{}/v1/knowledge?prefix={}",
            self.base,
            encode_segment(prefix)
        );
        let resp = self.send(Method::GET, &url, None).await?;
        json_body(resp, Method::GET, &url, StatusCode::OK).await
    }

    /// `PUT` arbitrary bytes to a key, keeping whatever comes back.
    pub async fn put_raw(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<RawResponse> {
        self.raw(
            Method::PUT,
            &self.knowledge_url(key),
            Some((body, content_type)),
        )
        .await
    }

    /// Any request to `path_and_query` (e.g. `/v1/knowledge/x`), kept
    /// verbatim.
    pub async fn request_raw(&self, method: Method, path_and_query: &str) -> Result<RawResponse> {
        let url = format!("{}{}", self.base, path_and_query);
        self.raw(method, &url, None).await
    }

    /// Like [`Self::request_raw`], with `body` sent as JSON.
    pub async fn request_raw_body(
        &self,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<RawResponse> {
        let url = format!("{}{}", self.base, path_and_query);
        self.raw(method, &url, Some((body, "application/json")))
            .await
    }

    async fn raw(
        &self,
        method: Method,
        url: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<RawResponse> {
        let resp = self.send(method, url, body).await?;
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .bytes()
            .await
            .with_context(|| format!("reading the body from {url}"))?;
        Ok(RawResponse {
            status,
            content_type,
            body: body.to_vec(),
        })
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> Result<reqwest::Response> {
        let mut req = self.http.request(method.clone(), url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some((bytes, content_type)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        req.send().await.with_context(|| format!("{method} {url}"))
    }
}

async fn failure(resp: reqwest::Response, method: Method, url: &str) -> ApiFailure {
    let status = resp.status();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"));
    ApiFailure {
        method,
        url: url.to_owned(),
        status,
        body,
    }
}

async fn json_body<T: for<'de> Deserialize<'de>>(
    resp: reqwest::Response,
    method: Method,
    url: &str,
    expected: StatusCode,
) -> Result<T> {
    if resp.status() != expected {
        return Err(failure(resp, method, url).await.into());
    }
    let bytes = resp
        .bytes()
        .await
        .with_context(|| format!("reading the body of {method} {url}"))?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{method} {url}: unexpected JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_escape_slashes_and_reserved_characters() {
        assert_eq!(
            encode_segment("missions/apollo 11"),
            "missions%2Fapollo%2011"
        );
        assert_eq!(encode_segment("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(encode_segment("?#%"), "%3F%23%25");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }

    #[test]
    fn knowledge_urls_keep_the_key_in_one_segment() {
        let client = NodeClient::new("127.0.0.1:9").unwrap();
        assert_eq!(
            client.knowledge_url("a/b"),
            "http://127.0.0.1:9/v1/knowledge/a%2Fb"
        );
    }

    #[test]
    fn status_parses_the_documented_shape() {
        let json = serde_json::json!({
            "peer_id": "12D3KooWx", "region": "us-east", "version": "0.1.0", "uptime_s": 3,
            "http_addr": "127.0.0.1:1", "listen_addrs": ["/ip4/127.0.0.1/tcp/2"], "gossip_enabled": true,
            "peers": [{"peer_id": "12D3KooWy", "region": null, "last_sync_ms": null, "in_sync": false}],
            "knowledge": {"entries": 1, "heads": ["ab"], "changes": 2, "doc_bytes": 300}
        });
        let status: Status = serde_json::from_value(json).unwrap();
        assert_eq!(status.peers[0].region, None);
        assert_eq!(status.knowledge.heads, vec!["ab".to_owned()]);
    }
}
