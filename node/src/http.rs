//! The HTTP API (axum). Handlers turn requests into [`ApiRequest`]s for the
//! core, wait for its answer, and render it as JSON.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/status` | the node's [`Status`](mc_core::Status) plus `http_addr` |
//! | PUT | `/v1/knowledge/{key}` | the stored entry, after it is durable |
//! | GET | `/v1/knowledge/{key}` | the entry, or 404 |
//! | DELETE | `/v1/knowledge/{key}` | 204, or 404 |
//! | GET | `/v1/knowledge?prefix=P` | a JSON array of entries, sorted by key |
//! | GET | `/v1/documents`, `/v1/documents/{id}` | see [`crate::http_documents`] |
//! | GET | `/healthz`; `/v1/tokens`, `/v1/whoami` | see [`crate::http_auth`] |
//!
//! Every route but `/healthz` needs a bearer token of the right role
//! ([`crate::auth`]); 401 `unauthorized` without one, 403 `forbidden` below it.
//! Errors are `{"error": CODE, "detail": TEXT}` with a 4xx/5xx status.
//! Keys may contain `/`, raw or percent-encoded.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use mc_core::{ApiError, ApiRequest, ApiResponse, LearnError};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A request on its way to the runtime, with the channel for its answer.
#[derive(Debug)]
pub struct ApiCall {
    /// The request.
    pub request: ApiRequest,
    /// Where the core's answer goes.
    pub reply: oneshot::Sender<Result<ApiResponse, ApiError>>,
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Requests to the runtime.
    pub calls: mpsc::Sender<ApiCall>,
    /// The address the API is bound to, reported on `/status`.
    pub http_addr: SocketAddr,
    /// The node's models and local training.
    pub learn: std::sync::Arc<crate::models::ModelRegistry>,
    /// The API tokens every call is checked against.
    pub tokens: std::sync::Arc<crate::auth::Tokens>,
}

/// An entry as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct EntryView {
    /// The key.
    pub key: String,
    /// The stored JSON value, written back exactly as the client sent it
    /// (less insignificant whitespace).
    pub value: mc_crdt::Json,
    /// The peer id of the node that wrote it.
    pub author: String,
    /// When it was written, in Unix milliseconds.
    pub updated_at: u64,
}

impl From<mc_crdt::Entry> for EntryView {
    fn from(e: mc_crdt::Entry) -> Self {
        Self {
            key: e.key,
            value: e.value,
            author: e.author,
            updated_at: e.updated_at_ms,
        }
    }
}

/// An error answer.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    extra: Option<serde_json::Value>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            extra: None,
        }
    }

    /// Adds structured detail (e.g. the bad rows of a CSV) under `errors`.
    pub(crate) fn with_errors(mut self, errors: serde_json::Value) -> Self {
        self.extra = Some(errors);
        self
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "detail": self.detail });
        if let Some(extra) = self.extra {
            body["errors"] = extra;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        let detail = e.to_string();
        match e {
            ApiError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", detail),
            ApiError::InvalidKey(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_key", detail),
            ApiError::UnknownDocument(_) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_document", detail)
            }
            ApiError::Document(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "document_error", detail)
            }
            ApiError::Learn(LearnError::Invalid(_)) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_campaign", detail)
            }
            ApiError::Learn(LearnError::UnknownCampaign(_)) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_campaign", detail)
            }
            ApiError::Learn(LearnError::Malformed(_)) => {
                Self::new(StatusCode::BAD_REQUEST, "malformed_update", detail)
            }
            ApiError::Learn(LearnError::WrongCampaign { .. }) => {
                Self::new(StatusCode::BAD_REQUEST, "campaign_mismatch", detail)
            }
            ApiError::Learn(LearnError::Rejected(rejection)) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "update_rejected", detail)
                    .with_errors(serde_json::json!([{ "reason": rejection.name() }]))
            }
            ApiError::Learn(LearnError::StateRefused(_)) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "state_refused", detail)
            }
        }
    }
}

impl From<PathRejection> for HttpError {
    fn from(r: PathRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_key", r.body_text())
    }
}

impl From<QueryRejection> for HttpError {
    fn from(r: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

impl From<BytesRejection> for HttpError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_body"
        };
        Self::new(status, code, r.body_text())
    }
}

/// The router, ready to serve.
pub fn router(state: AppState) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.clone(), crate::http_auth::authenticate);
    Router::new()
        .route("/status", get(status))
        .route("/v1/knowledge", get(list))
        .route(
            "/v1/knowledge/{*key}",
            get(get_entry).put(put_entry).delete(delete_entry),
        )
        .merge(crate::http_learn::routes())
        .merge(crate::http_documents::routes())
        .merge(crate::http_auth::routes())
        .fallback(|| async {
            HttpError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(auth)
        .with_state(state)
}

pub(crate) async fn call(state: &AppState, request: ApiRequest) -> Result<ApiResponse, HttpError> {
    let unavailable = || {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is shutting down",
        )
    };
    let (reply, answer) = oneshot::channel();
    state
        .calls
        .send(ApiCall { request, reply })
        .await
        .map_err(|_| unavailable())?;
    Ok(answer.await.map_err(|_| unavailable())??)
}

pub(crate) fn unexpected(r: ApiResponse) -> HttpError {
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("unexpected answer from the core: {r:?}"),
    )
}

async fn status(State(state): State<AppState>) -> Result<Response, HttpError> {
    match call(&state, ApiRequest::Status).await? {
        ApiResponse::Status(status) => {
            let mut body = serde_json::to_value(&*status).map_err(|e| {
                HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
            body["http_addr"] = json!(state.http_addr.to_string());
            Ok(axum::Json(body).into_response())
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(q) = query?;
    match call(&state, ApiRequest::List { prefix: q.prefix }).await? {
        ApiResponse::Entries(entries) => {
            let view: Vec<EntryView> = entries.into_iter().map(EntryView::from).collect();
            Ok(axum::Json(view).into_response())
        }
        other => Err(unexpected(other)),
    }
}

async fn get_entry(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(key) = key?;
    match call(&state, ApiRequest::Get { key }).await? {
        ApiResponse::Entry(e) => Ok(axum::Json(EntryView::from(e)).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn put_entry(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let Path(key) = key?;
    let body = body?;
    let value = mc_crdt::Json::from_slice(&body).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    match call(&state, ApiRequest::Put { key, value }).await? {
        ApiResponse::Entry(e) => Ok(axum::Json(EntryView::from(e)).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn delete_entry(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(key) = key?;
    match call(&state, ApiRequest::Delete { key }).await? {
        ApiResponse::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(unexpected(other)),
    }
}
