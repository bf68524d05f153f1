//! The documents part of the HTTP API: what this node replicates, and each
//! document's Automerge bytes for any other Automerge implementation to read.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v1/documents` | `[{id, entries, changes, heads, saved_bytes}]`, by id |
//! | GET | `/v1/documents/{id}` | the document (`application/octet-stream`, `Automerge.load` reads it), or 404 `unknown_document` |
//!
//! A knowledge document maps `entries/<key>` to a string holding the entry
//! as JSON: `{"v": value, "a": author, "t": updated_at_ms}`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::{AppState, HttpError, call, unexpected};
use mc_core::{ApiRequest, ApiResponse};

/// The routes of this part of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/documents", get(list))
        .route("/v1/documents/{*id}", get(export))
}

async fn list(State(state): State<AppState>) -> Result<Response, HttpError> {
    match call(&state, ApiRequest::ListDocuments).await? {
        ApiResponse::Documents(docs) => Ok(axum::Json(docs).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn export(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(id) = id?;
    match call(&state, ApiRequest::ExportDocument { id }).await? {
        ApiResponse::DocumentBytes(bytes) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
        }
        other => Err(unexpected(other)),
    }
}
