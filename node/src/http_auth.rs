//! Authentication of every API call, and the token routes.
//!
//! | method | path | role | answer |
//! |---|---|---|---|
//! | GET | `/healthz` | none | `{"ok": true}` |
//! | GET | `/v1/whoami` | reader | the caller's token (id, name, role) |
//! | GET | `/v1/tokens` | admin | the live tokens (never their secrets) |
//! | POST | `/v1/tokens` | admin | `{"name", "role"}` → 201 with the new `token`, shown once |
//! | DELETE | `/v1/tokens/{id}` | admin | 200 with the revoked token; 409 `last_admin` |
//!
//! A request without a valid `Authorization: Bearer TOKEN` gets 401
//! `unauthorized` (with `WWW-Authenticate: Bearer`); one whose token's role is
//! too low gets 403 `forbidden`. See [`crate::auth`] for the roles.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{AuthError, Role, TokenView, required_role};
use crate::http::{AppState, HttpError};
use crate::http_learn::now_ms;

/// The token routes and `/healthz`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"ok": true})) }),
        )
        .route("/v1/whoami", get(whoami))
        .route("/v1/tokens", get(list).post(create))
        .route("/v1/tokens/{id}", delete(revoke))
}

/// Middleware: checks the bearer token against the route's [`required_role`]
/// and passes the caller's [`TokenView`] on as a request extension.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let needed = required_role(
        request.method(),
        request.uri().path(),
        state.tokens.open_reads(),
    );
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let caller = presented.and_then(|t| state.tokens.check(t));
    let Some(needed) = needed else {
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        return next.run(request).await;
    };
    let Some(caller) = caller else {
        let detail = if presented.is_some() {
            "the bearer token is unknown or revoked"
        } else {
            "this route needs an `Authorization: Bearer TOKEN` header"
        };
        let mut response =
            HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    };
    if caller.role < needed {
        return HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "token {} has role {}; this route needs {}",
                caller.id,
                caller.role.name(),
                needed.name()
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

impl From<AuthError> for HttpError {
    fn from(e: AuthError) -> Self {
        let detail = e.to_string();
        let (status, code) = match e {
            AuthError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AuthError::LastAdmin(_) => (StatusCode::CONFLICT, "last_admin"),
            AuthError::BadName | AuthError::BadEnvToken => {
                (StatusCode::BAD_REQUEST, "invalid_token_request")
            }
            AuthError::Sled(_) | AuthError::Corrupt(_) | AuthError::TokenFile { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        Self::new(status, code, detail)
    }
}

async fn whoami(caller: Option<axum::Extension<TokenView>>) -> Result<Response, HttpError> {
    match caller {
        Some(axum::Extension(view)) => Ok(axum::Json(view).into_response()),
        None => Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no token was presented",
        )),
    }
}

async fn list(State(state): State<AppState>) -> Response {
    axum::Json(state.tokens.list()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
}

async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = body?;
    let new: NewToken = serde_json::from_slice(&body).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("want {{\"name\": TEXT, \"role\": reader|writer|operator|admin}}: {e}"),
        )
    })?;
    let tokens = state.tokens.clone();
    let (view, token) =
        tokio::task::spawn_blocking(move || tokens.create(&new.name, new.role, now_ms()))
            .await
            .map_err(|e| {
                HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })??;
    tracing::info!(id = %view.id, name = %view.name, role = view.role.name(), "API token created");
    let mut body = serde_json::to_value(&view).expect("a view serialises");
    body["token"] = json!(token);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let tokens = state.tokens.clone();
    let view = tokio::task::spawn_blocking(move || tokens.revoke(&id, now_ms()))
        .await
        .map_err(|e| {
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
    tracing::info!(id = %view.id, name = %view.name, "API token revoked");
    Ok(axum::Json(view).into_response())
}
