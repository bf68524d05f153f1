//! What the model registry answers and stores: versions, summaries,
//! performance reports, and its errors.

use mc_learn_core::Evaluation;
use mc_learn_core::csv::{CsvError, RowError};
use mc_learn_core::evaluate::BaselineComparison;
use mc_learn_core::metrics::DriftReport;
use mc_learn_core::schema::{ModelSchema, SchemaError};
use serde::{Deserialize, Serialize};

use crate::worker::WorkerError;

/// Why a learning request failed.
#[derive(Debug, thiserror::Error)]
pub enum LearnApiError {
    /// No model has this name.
    #[error("no model named {0:?}; declare it with POST /v1/models")]
    UnknownModel(String),
    /// The schema is invalid.
    #[error("invalid schema: {0}")]
    InvalidSchema(#[from] SchemaError),
    /// A different model already has this name.
    #[error("a different model named {0:?} exists")]
    Conflict(String),
    /// The CSV does not fit the model's schema.
    #[error("{0}")]
    Csv(#[from] CsvError),
    /// No data has been imported for the model.
    #[error("no data imported for model {0:?}; use POST /v1/learn/import?model={0}")]
    NoData(String),
    /// No trained version of the model exists yet.
    #[error("model {0:?} has no trained version yet")]
    NoVersion(String),
    /// Custom training refused or failed.
    #[error("{0}")]
    Custom(String),
    /// Transfer learning refused or failed.
    #[error("{0}")]
    Transfer(String),
    /// The learning worker could not be started or kept dying.
    #[error("{0}")]
    Worker(#[from] WorkerError),
    /// A request parameter is invalid.
    #[error("{0}")]
    BadRequest(String),
    /// The trained model scored below the activation floor.
    #[error(
        "model scored {score:.4}, below the activation floor {floor}; version {version} kept inactive"
    )]
    BelowFloor {
        /// The score (R² or F1).
        score: f64,
        /// The floor.
        floor: f64,
        /// The stored, inactive version.
        version: u32,
    },
    /// Model or weight file handling failed.
    #[error("model error: {0}")]
    Model(String),
    /// The database failed.
    #[error("store error: {0}")]
    Store(#[from] sled::Error),
}

impl LearnApiError {
    /// The row errors of a refused CSV, for the API's JSON body.
    pub fn row_errors(&self) -> &[RowError] {
        match self {
            LearnApiError::Csv(e) => e.row_errors(),
            _ => &[],
        }
    }
}

pub(crate) fn model_err(e: impl std::fmt::Display) -> LearnApiError {
    LearnApiError::Model(e.to_string())
}

/// What is stored with each trained version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// Version number, from 1.
    pub version: u32,
    /// `custom`, `transfer` or `federated:<campaign>`.
    pub source: String,
    /// When it was made (ms since the epoch).
    pub created_at_ms: u64,
    /// Scores on the local test split (last 20 %), when there was local data.
    pub evaluation: Option<Evaluation>,
    /// Comparison with the mean / last-value baselines.
    pub baseline_vs_custom: Option<serde_json::Value>,
    /// Whether this version passed the floor and was activated.
    pub activated: bool,
    /// Rows of local data when it was trained; later rows are "incoming"
    /// for drift detection.
    pub rows_at_training: usize,
    /// Rows it was trained on.
    pub train_rows: usize,
    /// BLAKE3 hash of the flat weights (hex).
    pub model_hash: String,
}

/// One model in `GET /v1/models`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The schema.
    #[serde(flatten)]
    pub schema: ModelSchema,
    /// Whether it is one of the built-in models.
    pub builtin: bool,
    /// Imported rows.
    pub rows: usize,
    /// The active version, if any.
    pub active_version: Option<u32>,
    /// Number of stored versions.
    pub versions: usize,
}

/// What an import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The model.
    pub model: String,
    /// Rows added by this import.
    pub imported_rows: usize,
    /// Rows now stored for the model.
    pub total_rows: usize,
    /// Drift of the stored rows since the active version was trained
    /// (only when there is an active version and new rows).
    pub drift: Option<DriftReport>,
    /// Set when drift triggered a retrain: the new version's summary.
    pub retrained: Option<TrainSummary>,
}

/// Custom training's answer.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// The stored version.
    pub version: u32,
    /// Whether it was activated.
    pub activated: bool,
    /// R² or F1 on the test split.
    pub score: f64,
    /// The floor it was held to.
    pub activation_floor: f64,
    /// Rows trained on / tested on.
    pub train_rows: usize,
    /// Test rows.
    pub test_rows: usize,
    /// Full scores.
    pub evaluation: Evaluation,
    /// Against the baselines.
    pub baseline_vs_custom: BaselineComparison,
}

/// Most epochs a training or transfer request may ask for.
pub const MAX_EPOCHS: usize = 10_000;

/// `epochs` if it is 1..=[`MAX_EPOCHS`].
pub(crate) fn check_epochs(epochs: usize) -> Result<usize, LearnApiError> {
    if epochs == 0 || epochs > MAX_EPOCHS {
        return Err(LearnApiError::BadRequest(format!(
            "epochs must be 1-{MAX_EPOCHS}, not {epochs}"
        )));
    }
    Ok(epochs)
}

/// How long and how fast transfer learning fine-tunes; `None` for
/// the worker's defaults (`mc_learn::transfer::Options`). The
/// from-scratch model the report compares with trains with the default
/// training settings either way.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tuning {
    /// Passes over the training rows.
    pub epochs: Option<usize>,
    /// Adam's learning rate.
    pub learning_rate: Option<f64>,
}

/// Transfer learning's answer.
#[derive(Debug, Clone, Serialize)]
pub struct TransferSummary {
    /// The stored version.
    pub version: u32,
    /// Where the base came from (`version <n>` or `uploaded`).
    pub base: String,
    /// Layers fine-tuned.
    pub trained_layers: usize,
    /// Layers frozen.
    pub frozen_layers: usize,
    /// Scores of the base model as it is, on the local test split.
    pub base_evaluation: Evaluation,
    /// Scores after fine-tuning.
    pub fine_tuned: Evaluation,
    /// Scores of a model trained from scratch on the same rows.
    pub scratch: Evaluation,
    /// Improvement of fine-tuned over base, %.
    pub improvement_over_base_pct: Option<f64>,
    /// Improvement of fine-tuned over scratch, %.
    pub improvement_over_scratch_pct: Option<f64>,
}

/// `GET /v1/models/{name}/performance`.
#[derive(Debug, Clone, Serialize)]
pub struct Performance {
    /// The model.
    pub model: String,
    /// The active version.
    pub version: u32,
    /// Where it came from.
    pub source: String,
    /// Main score: R² (regression) or accuracy (classifier) on the local test split.
    pub accuracy: f64,
    /// All scores on the local test split.
    pub evaluation: Evaluation,
    /// Milliseconds per row of a batched forward pass, measured now.
    pub inference_latency_ms: f64,
    /// Current vs baseline.
    pub baseline_comparison: BaselineComparisonView,
    /// Drift of rows imported since training.
    pub drift: DriftView,
    /// Classifier only.
    pub precision: Option<f64>,
    /// Classifier only.
    pub recall: Option<f64>,
    /// Classifier only.
    pub f1: Option<f64>,
}

/// The baseline part of [`Performance`].
#[derive(Debug, Clone, Serialize)]
pub struct BaselineComparisonView {
    /// The model's score.
    pub current: f64,
    /// The better baseline's score.
    pub baseline: f64,
    /// `(current − baseline) / |baseline| · 100`, when the baseline is not 0.
    pub improvement_percent: Option<f64>,
}

/// The drift part of [`Performance`].
#[derive(Debug, Clone, Serialize)]
pub struct DriftView {
    /// Whether drift was detected (the retrain trigger).
    pub detected: bool,
    /// The drift score (largest per-feature PSI).
    pub score: f64,
    /// Rows compared against the training data.
    pub incoming_rows: usize,
    /// The full report, when there were incoming rows.
    pub report: Option<DriftReport>,
}

/// Options of `POST /v1/models/{name}/train`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRequest {
    /// Epochs (default 40).
    pub epochs: Option<usize>,
    /// Activation floor (default 0.7).
    pub activation_floor: Option<f64>,
    /// Minimum rows (default 1000).
    pub min_rows: Option<usize>,
    /// Seed (default 0).
    pub seed: Option<u64>,
    /// Learning rate (default 1e-3).
    pub learning_rate: Option<f64>,
}
