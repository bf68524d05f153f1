//! The learning half of the HTTP API: models, data import, training,
//! transfer learning, weights, performance and federated campaigns.
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/models` | | every model with rows and versions |
//! | POST | `/v1/models` | schema JSON | the declared model (201) |
//! | GET | `/v1/models/{name}` | | the model and its versions |
//! | POST | `/v1/learn/import?model=NAME[&replace=true][&retrain_on_drift=false]` | CSV | rows imported, drift |
//! | POST | `/v1/models/{name}/train` | options JSON (may be empty) | version, R²/MAE, baseline_vs_custom |
//! | POST | `/v1/models/{name}/transfer?k=1[&epochs=80][&learning_rate=0.0002]` | empty, or a base model as safetensors | improvements vs base and scratch |
//! | GET | `/v1/models/{name}/weights` | | the active version as safetensors |
//! | GET | `/v1/models/{name}/performance` | | accuracy, latency, baseline, drift |
//! | GET | `/v1/learn/worker` | | the learning worker: pid, busy, jobs, starts, deaths |
//! | POST | `/v1/campaigns` | campaign JSON | the campaign (201) |
//! | GET | `/v1/campaigns`, `/v1/campaigns/{id}` | | state, round, per-round digests |
//! | POST | `/v1/campaigns/{id}/updates` | an encoded signed update (≤ 64 MiB) | 202; 400 `campaign_mismatch` for another campaign's update; 422 with the rejection |
//!
//! Model work runs on a blocking thread, which hands it to the learning
//! worker process ([`crate::worker`]); campaign requests go through the core
//! like every replicated operation.

use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use libp2p::PeerId;
use mc_learn_core::aggregate::Rule;
use serde::Deserialize;
use serde_json::json;

use crate::http::{AppState, HttpError, call, unexpected};
use crate::models::{LearnApiError, ModelRegistry, TrainRequest, Tuning};
use mc_core::learning::Init;
use mc_core::{ApiRequest, ApiResponse, CampaignRequest, Participant};

/// The largest CSV, model file or signed update accepted (an update of a
/// model of up to 16M parameters).
pub const MAX_UPLOAD_BYTES: usize = 64 * 1024 * 1024;

/// The learning routes.
pub fn routes() -> Router<AppState> {
    let upload = DefaultBodyLimit::max(MAX_UPLOAD_BYTES);
    Router::new()
        .route("/v1/models", get(list_models).post(declare_model))
        .route("/v1/models/{name}", get(model_info))
        .route("/v1/learn/import", post(import).layer(upload))
        .route("/v1/learn/worker", get(worker_status))
        .route("/v1/models/{name}/train", post(train))
        .route("/v1/models/{name}/transfer", post(transfer).layer(upload))
        .route("/v1/models/{name}/weights", get(weights))
        .route("/v1/models/{name}/performance", get(performance))
        .route("/v1/campaigns", get(list_campaigns).post(create_campaign))
        .route("/v1/campaigns/{id}", get(get_campaign))
        .route(
            "/v1/campaigns/{id}/updates",
            post(submit_update).layer(upload),
        )
}

impl From<LearnApiError> for HttpError {
    fn from(e: LearnApiError) -> Self {
        let detail = e.to_string();
        let (status, code) = match &e {
            LearnApiError::UnknownModel(_) => (StatusCode::NOT_FOUND, "unknown_model"),
            LearnApiError::NoVersion(_) => (StatusCode::NOT_FOUND, "no_version"),
            LearnApiError::InvalidSchema(_) => (StatusCode::BAD_REQUEST, "invalid_schema"),
            LearnApiError::Conflict(_) => (StatusCode::CONFLICT, "model_exists"),
            LearnApiError::Csv(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_csv"),
            LearnApiError::NoData(_) => (StatusCode::CONFLICT, "no_data"),
            LearnApiError::Custom(_) => (StatusCode::UNPROCESSABLE_ENTITY, "training_refused"),
            LearnApiError::Transfer(_) => (StatusCode::UNPROCESSABLE_ENTITY, "transfer_refused"),
            LearnApiError::BelowFloor { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "below_floor"),
            LearnApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            LearnApiError::Model(_) => (StatusCode::UNPROCESSABLE_ENTITY, "model_error"),
            LearnApiError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
            LearnApiError::Worker(_) => (StatusCode::SERVICE_UNAVAILABLE, "worker_unavailable"),
        };
        let rows = e.row_errors();
        let error = HttpError::new(status, code, detail);
        if rows.is_empty() {
            error
        } else {
            error.with_errors(json!(rows))
        }
    }
}

/// Runs model work on a blocking thread.
async fn blocking<T: Send + 'static>(
    service: &Arc<ModelRegistry>,
    work: impl FnOnce(&ModelRegistry) -> Result<T, LearnApiError> + Send + 'static,
) -> Result<T, HttpError> {
    let service = service.clone();
    tokio::task::spawn_blocking(move || work(&service))
        .await
        .map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(HttpError::from)
}

fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    empty: Option<T>,
) -> Result<T, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace)
        && let Some(default) = empty
    {
        return Ok(default);
    }
    serde_json::from_slice(body).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON for this request: {e}"),
        )
    })
}

/// Wall-clock Unix milliseconds (the driver's clock).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn list_models(State(state): State<AppState>) -> Result<Response, HttpError> {
    let models = blocking(&state.learn, |s| s.models()).await?;
    Ok(axum::Json(models).into_response())
}

/// The learning worker: its pid while one is up, whether it is busy, and
/// how many jobs, starts, deaths and idle stops it has had.
async fn worker_status(State(state): State<AppState>) -> Response {
    axum::Json(state.learn.worker_status()).into_response()
}

async fn declare_model(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let schema = json_body(&body?, None)?;
    let info = blocking(&state.learn, move |s| s.declare(schema)).await?;
    Ok((StatusCode::CREATED, axum::Json(info)).into_response())
}

async fn model_info(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(name) = name?;
    let (info, versions) = blocking(&state.learn, move |s| {
        let info = s
            .models()?
            .into_iter()
            .find(|m| m.schema.name == name)
            .ok_or(LearnApiError::UnknownModel(name.clone()))?;
        Ok((info, s.versions(&name)?))
    })
    .await?;
    let mut body = serde_json::to_value(info).unwrap_or_default();
    body["version_history"] = json!(versions);
    Ok(axum::Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    model: String,
    #[serde(default)]
    replace: bool,
    #[serde(default = "yes")]
    retrain_on_drift: bool,
}

fn yes() -> bool {
    true
}

async fn import(
    State(state): State<AppState>,
    query: Result<Query<ImportQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let Query(q) = query?;
    let body = body?;
    let report = blocking(&state.learn, move |s| {
        s.import_csv(&q.model, &body, q.replace, q.retrain_on_drift, now_ms())
    })
    .await?;
    Ok(axum::Json(report).into_response())
}

async fn train(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let Path(name) = name?;
    let request: TrainRequest = json_body(
        &body?,
        Some(TrainRequest {
            epochs: None,
            activation_floor: None,
            min_rows: None,
            seed: None,
            learning_rate: None,
        }),
    )?;
    let summary = blocking(&state.learn, move |s| s.train(&name, &request, now_ms())).await?;
    Ok(axum::Json(summary).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferQuery {
    #[serde(default = "one")]
    k: usize,
    epochs: Option<usize>,
    learning_rate: Option<f64>,
}

fn one() -> usize {
    1
}

async fn transfer(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<TransferQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let Path(name) = name?;
    let Query(q) = query?;
    let body = body?;
    let summary = blocking(&state.learn, move |s| {
        let base = (!body.is_empty()).then_some(&body[..]);
        let tuning = Tuning {
            epochs: q.epochs,
            learning_rate: q.learning_rate,
        };
        s.transfer(&name, q.k, base, tuning, now_ms())
    })
    .await?;
    Ok(axum::Json(summary).into_response())
}

async fn weights(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(name) = name?;
    let bytes = blocking(&state.learn, move |s| s.weights(&name)).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

async fn performance(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(name) = name?;
    let perf = blocking(&state.learn, move |s| s.performance(&name)).await?;
    Ok(axum::Json(perf).into_response())
}

/// The body of `POST /v1/campaigns`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignBody {
    model: String,
    rounds: u32,
    local_epochs: u32,
    participants: Vec<String>,
    aggregation: String,
    round_deadline_s: f64,
    seed: Option<u64>,
    max_update_norm: Option<f64>,
    /// Rows per local step (1-65536; default `DEFAULT_CAMPAIGN_BATCH`).
    batch_size: Option<u32>,
    /// Learning rate of round 1, in (0, 10] (default `DEFAULT_CAMPAIGN_LR`).
    learning_rate: Option<f64>,
    /// Correct client drift with control variates (default
    /// `mc_learn_core::scaffold::default_for`: on under FedAvg and Multi-Krum).
    drift_correction: Option<bool>,
    /// The last round's learning rate as a fraction of round 1's, in (0, 1]
    /// (default `DEFAULT_FINAL_RATE_FRACTION`; 1 keeps the rate constant).
    final_rate_fraction: Option<f64>,
    /// The starting weights: `he_uniform` or `torch` (default
    /// `DEFAULT_CAMPAIGN_INIT`).
    init: Option<String>,
}

/// The ed25519 key a peer id names (libp2p inlines small keys in the id).
pub fn key_of_peer(peer: &str) -> Result<String, String> {
    let id = PeerId::from_str(peer).map_err(|e| format!("{peer:?} is not a peer id: {e}"))?;
    let bytes = id.to_bytes();
    // An identity multihash: code 0x00, length, then the protobuf key.
    if bytes.len() < 3 || bytes[0] != 0 || usize::from(bytes[1]) != bytes.len() - 2 {
        return Err(format!("peer id {peer} does not embed its public key"));
    }
    let key = libp2p::identity::PublicKey::try_decode_protobuf(&bytes[2..])
        .map_err(|e| format!("peer id {peer}: {e}"))?
        .try_into_ed25519()
        .map_err(|_| format!("peer id {peer} is not an ed25519 key"))?;
    Ok(hex::encode(key.to_bytes()))
}

async fn create_campaign(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body: CampaignBody = json_body(&body?, None)?;
    let bad = |m: String| HttpError::new(StatusCode::BAD_REQUEST, "invalid_campaign", m);
    let aggregation = Rule::from_str(&body.aggregation).map_err(|e| bad(e.to_string()))?;
    let participants = body
        .participants
        .iter()
        .map(|p| {
            Ok(Participant {
                node: p.clone(),
                key: key_of_peer(p)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(bad)?;
    let init = body
        .init
        .as_deref()
        .map(Init::from_str)
        .transpose()
        .map_err(bad)?;
    let model_name = body.model.clone();
    let model = blocking(&state.learn, move |s| s.schema(&model_name)).await?;
    let request = CampaignRequest {
        model,
        rounds: body.rounds,
        local_epochs: body.local_epochs,
        batch_size: body.batch_size,
        learning_rate: body.learning_rate,
        drift_correction: body.drift_correction,
        final_rate_fraction: body.final_rate_fraction,
        init,
        participants,
        aggregation,
        round_deadline_s: body.round_deadline_s,
        seed: body.seed,
        max_update_norm: body.max_update_norm,
    };
    match call(&state, ApiRequest::CreateCampaign(Box::new(request))).await? {
        ApiResponse::Campaign(view) => Ok((StatusCode::CREATED, axum::Json(*view)).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn list_campaigns(State(state): State<AppState>) -> Result<Response, HttpError> {
    match call(&state, ApiRequest::ListCampaigns).await? {
        ApiResponse::Campaigns(views) => Ok(axum::Json(views).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn get_campaign(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let Path(id) = id?;
    match call(&state, ApiRequest::GetCampaign { id }).await? {
        ApiResponse::Campaign(view) => Ok(axum::Json(*view).into_response()),
        other => Err(unexpected(other)),
    }
}

async fn submit_update(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let Path(id) = id?;
    let bytes = body?.to_vec();
    let request = ApiRequest::SubmitUpdate {
        campaign: Some(id),
        bytes,
    };
    match call(&state, request).await? {
        ApiResponse::UpdateAccepted => Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({ "accepted": true })),
        )
            .into_response()),
        other => Err(unexpected(other)),
    }
}
