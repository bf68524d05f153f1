//! The node's models: declared schemas, imported data, trained versions and
//! the local work federated campaigns ask for.
//!
//! Everything here stays on the node. Imported rows are stored in the
//! node's sled database and only ever read by local training; what leaves
//! the node is what the core sends — signed weights and moments.
//!
//! The HTTP API and the `mc-node learn …` subcommands call the same
//! [`LearnService`] methods; training is CPU- or GPU-bound, so async callers
//! run them on a blocking thread.
//!
//! # Stored keys (sled tree `learn`)
//!
//! - `schema/<model>`: a declared [`ModelSchema`] (JSON); the built-in
//!   models need no declaration;
//! - `data/<model>`: the imported rows (postcard [`Dataset`]), time-ordered;
//! - `version/<model>/<n>`: [`VersionMeta`] (JSON) of version `n`, and
//!   `weights/<model>/<n>` its safetensors file;
//! - `active/<model>`: the version in use.

use std::sync::Arc;
use std::time::Instant;

use mc_learn::custom::{self, CustomError};
use mc_learn::federated::{moments_vector, normaliser_from_moments};
use mc_learn::transfer::{self, TransferError};
use mc_learn::{Evaluation, Model};
use mc_learn_core::csv::{CsvError, CsvLimits, RowError, parse_csv};
use mc_learn_core::metrics::{DriftConfig, DriftDetector, DriftReport};
use mc_learn_core::schema::{self, ModelSchema, SchemaError};
use mc_learn_core::{Dataset, Task};
use serde::{Deserialize, Serialize};

use mc_core::{FinishedModel, TrainJob, TrainKind};

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
    Custom(#[from] CustomError),
    /// Transfer learning refused or failed.
    #[error("{0}")]
    Transfer(#[from] TransferError),
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

fn model_err(e: impl std::fmt::Display) -> LearnApiError {
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
    pub baseline_vs_custom: serde_json::Value,
}

/// Most epochs a training or transfer request may ask for.
pub const MAX_EPOCHS: usize = 10_000;

/// `epochs` if it is 1..=[`MAX_EPOCHS`].
fn check_epochs(epochs: usize) -> Result<usize, LearnApiError> {
    if epochs == 0 || epochs > MAX_EPOCHS {
        return Err(LearnApiError::BadRequest(format!(
            "epochs must be 1-{MAX_EPOCHS}, not {epochs}"
        )));
    }
    Ok(epochs)
}

/// How long and how fast transfer learning fine-tunes; `None` for
/// [`transfer::Options::default`]'s. The from-scratch model the report
/// compares with trains with [`mc_learn::TrainConfig`]'s defaults either
/// way.
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

/// The model registry and trainer of one node.
#[derive(Debug, Clone)]
pub struct LearnService {
    tree: sled::Tree,
    db: sled::Db,
}

impl LearnService {
    /// Opens the `learn` tree of the node's database.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree("learn")?,
            db: db.clone(),
        })
    }

    fn flush(&self) -> Result<(), LearnApiError> {
        self.db.flush()?;
        Ok(())
    }

    /// Declares a model. Declaring the same schema again is a no-op.
    pub fn declare(&self, schema: ModelSchema) -> Result<ModelInfo, LearnApiError> {
        schema.validate()?;
        if let Some(existing) = self.schema(&schema.name).ok()
            && existing != schema
        {
            return Err(LearnApiError::Conflict(schema.name));
        }
        let json = serde_json::to_vec(&schema).map_err(model_err)?;
        self.tree.insert(format!("schema/{}", schema.name), json)?;
        self.flush()?;
        self.info(&schema.name)
    }

    /// The schema of `name` (declared or built in).
    pub fn schema(&self, name: &str) -> Result<ModelSchema, LearnApiError> {
        if let Some(s) = schema::builtin_named(name) {
            return Ok(s);
        }
        match self.tree.get(format!("schema/{name}"))? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(model_err),
            None => Err(LearnApiError::UnknownModel(name.to_string())),
        }
    }

    /// Every model: the built-ins and the declared ones.
    pub fn models(&self) -> Result<Vec<ModelInfo>, LearnApiError> {
        let mut names: Vec<String> = schema::builtin().into_iter().map(|s| s.name).collect();
        for item in self.tree.scan_prefix("schema/") {
            let (key, _) = item?;
            let key = String::from_utf8_lossy(&key);
            names.push(key.trim_start_matches("schema/").to_string());
        }
        names.sort();
        names.dedup();
        names.iter().map(|n| self.info(n)).collect()
    }

    fn info(&self, name: &str) -> Result<ModelInfo, LearnApiError> {
        let schema = self.schema(name)?;
        Ok(ModelInfo {
            builtin: schema::builtin_named(name).is_some(),
            rows: self.dataset(name)?.map_or(0, |d| d.len()),
            active_version: self.active(name)?,
            versions: self.tree.scan_prefix(format!("version/{name}/")).count(),
            schema,
        })
    }

    /// The imported rows of `name`.
    pub fn dataset(&self, name: &str) -> Result<Option<Dataset>, LearnApiError> {
        match self.tree.get(format!("data/{name}"))? {
            Some(bytes) => Ok(Some(postcard::from_bytes(&bytes).map_err(model_err)?)),
            None => Ok(None),
        }
    }

    /// Imports CSV rows for `name`: all of them or, on any bad row, none.
    /// Rows are appended after earlier imports (or replace them). When an
    /// active version exists, the stored rows since its training are checked
    /// for drift; with `retrain_on_drift`, detected drift retrains it.
    pub fn import_csv(
        &self,
        name: &str,
        csv: &[u8],
        replace: bool,
        retrain_on_drift: bool,
        now_ms: u64,
    ) -> Result<ImportReport, LearnApiError> {
        let schema = self.schema(name)?;
        let new = parse_csv(csv, &schema, CsvLimits::default())?;
        let mut data = match (replace, self.dataset(name)?) {
            (false, Some(existing)) => existing,
            _ => Dataset::empty(schema.features.clone(), schema.target.clone()),
        };
        data.extend(&new);
        let bytes = postcard::to_stdvec(&data).map_err(model_err)?;
        self.tree.insert(format!("data/{name}"), bytes)?;
        self.flush()?;
        let mut report = ImportReport {
            model: name.to_string(),
            imported_rows: new.len(),
            total_rows: data.len(),
            drift: None,
            retrained: None,
        };
        if let Some(drift) = self.drift(name, &data)? {
            let detected = drift.detected;
            report.drift = Some(drift);
            if detected && retrain_on_drift && data.len() >= custom::DEFAULT_MIN_ROWS {
                tracing::info!(model = name, "drift detected; retraining");
                report.retrained = Some(self.train_inner(
                    name,
                    &TrainRequest {
                        epochs: None,
                        activation_floor: None,
                        min_rows: None,
                        seed: None,
                        learning_rate: None,
                    },
                    now_ms,
                )?);
            }
        }
        Ok(report)
    }

    /// Drift of the rows imported since the active version was trained.
    fn drift(&self, name: &str, data: &Dataset) -> Result<Option<DriftReport>, LearnApiError> {
        let Some((meta, model)) = self.active_model(name)? else {
            return Ok(None);
        };
        let cut = meta.rows_at_training.min(data.len());
        if cut == 0 || cut == data.len() {
            return Ok(None);
        }
        let reference = data.slice(0..cut);
        let incoming = data.slice(cut..data.len());
        let residuals = |d: &Dataset| -> Result<Vec<f32>, LearnApiError> {
            let p = model.predict(d).map_err(model_err)?;
            Ok(p.iter().zip(&d.y).map(|(p, y)| y - p).collect())
        };
        // Calendar columns always look shifted over a short window.
        let config = DriftConfig {
            ignored_features: vec!["hour_of_day".into(), "day_of_week".into()],
            ..DriftConfig::default()
        };
        let detector = match DriftDetector::fit_with(config, &reference, &residuals(&reference)?) {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(model = name, %error, "no drift check");
                return Ok(None);
            }
        };
        match detector.check(&incoming, &residuals(&incoming)?) {
            Ok(report) => Ok(Some(report)),
            Err(error) => {
                tracing::debug!(model = name, %error, "no drift check");
                Ok(None)
            }
        }
    }

    /// Custom training on the node's data (seed 27.1).
    pub fn train(
        &self,
        name: &str,
        request: &TrainRequest,
        now_ms: u64,
    ) -> Result<TrainSummary, LearnApiError> {
        let summary = self.train_inner(name, request, now_ms)?;
        if !summary.activated {
            return Err(LearnApiError::BelowFloor {
                score: summary.score,
                floor: summary.activation_floor,
                version: summary.version,
            });
        }
        Ok(summary)
    }

    fn train_inner(
        &self,
        name: &str,
        request: &TrainRequest,
        now_ms: u64,
    ) -> Result<TrainSummary, LearnApiError> {
        let schema = self.schema(name)?;
        let data = self
            .dataset(name)?
            .ok_or_else(|| LearnApiError::NoData(name.to_string()))?;
        let mut opts = custom::Options::default();
        if let Some(e) = request.epochs {
            opts.train.epochs = check_epochs(e)?;
        }
        if let Some(f) = request.activation_floor {
            opts.activation_floor = f;
        }
        if let Some(m) = request.min_rows {
            opts.min_rows = m;
        }
        if let Some(s) = request.seed {
            opts.train.seed = s;
        }
        if let Some(lr) = request.learning_rate {
            opts.train.learning_rate = lr;
        }
        let report = custom::train(&schema, &data, &opts)?;
        let baseline = serde_json::to_value(report.baseline_vs_custom).map_err(model_err)?;
        let meta = VersionMeta {
            version: 0,
            source: "custom".into(),
            created_at_ms: now_ms,
            evaluation: Some(report.evaluation),
            baseline_vs_custom: Some(baseline.clone()),
            activated: report.activated,
            rows_at_training: data.len(),
            train_rows: report.train_rows,
            model_hash: mc_learn_core::model_hash(&report.model.flat_weights()).to_string(),
        };
        let version = self.store_version(name, meta, &report.model)?;
        Ok(TrainSummary {
            version,
            activated: report.activated,
            score: report.score,
            activation_floor: report.activation_floor,
            train_rows: report.train_rows,
            test_rows: report.test_rows,
            evaluation: report.evaluation,
            baseline_vs_custom: baseline,
        })
    }

    /// Transfer learning (seed 27.2): fine-tunes the last `k` layers of the
    /// active version (or of `base_safetensors`) on the node's data, for
    /// `tuning`'s epochs at its learning rate (each
    /// [`transfer::Options::default`]'s when absent).
    pub fn transfer(
        &self,
        name: &str,
        k: usize,
        base_safetensors: Option<&[u8]>,
        tuning: Tuning,
        now_ms: u64,
    ) -> Result<TransferSummary, LearnApiError> {
        let mut opts = transfer::Options::default();
        if let Some(epochs) = tuning.epochs {
            opts.fine_tune_epochs = check_epochs(epochs)?;
        }
        if let Some(rate) = tuning.learning_rate {
            mc_core::learning::check_learning_rate(rate).map_err(LearnApiError::BadRequest)?;
            opts.fine_tune_learning_rate = rate;
        }
        let schema = self.schema(name)?;
        let data = self
            .dataset(name)?
            .ok_or_else(|| LearnApiError::NoData(name.to_string()))?;
        let (base, base_name) = match base_safetensors {
            Some(bytes) => (
                Model::from_safetensors_bytes(&schema, bytes, mc_learn::default_device())
                    .map_err(model_err)?,
                "uploaded".to_string(),
            ),
            None => {
                let (meta, model) = self
                    .active_model(name)?
                    .ok_or_else(|| LearnApiError::NoVersion(name.to_string()))?;
                (model, format!("version {}", meta.version))
            }
        };
        let report = transfer::fine_tune(&base, &data, k, &opts)?;
        let meta = VersionMeta {
            version: 0,
            source: "transfer".into(),
            created_at_ms: now_ms,
            evaluation: Some(report.fine_tuned),
            baseline_vs_custom: None,
            activated: true,
            rows_at_training: data.len(),
            train_rows: report.train_rows,
            model_hash: mc_learn_core::model_hash(&report.model.flat_weights()).to_string(),
        };
        let version = self.store_version(name, meta, &report.model)?;
        Ok(TransferSummary {
            version,
            base: base_name,
            trained_layers: report.trained_layers,
            frozen_layers: report.frozen_layers,
            base_evaluation: report.base,
            fine_tuned: report.fine_tuned,
            scratch: report.scratch,
            improvement_over_base_pct: report.improvement_over_base_pct,
            improvement_over_scratch_pct: report.improvement_over_scratch_pct,
        })
    }

    /// Stores a version and, when it is activated, makes it the active one.
    fn store_version(
        &self,
        name: &str,
        mut meta: VersionMeta,
        model: &Model,
    ) -> Result<u32, LearnApiError> {
        let version = self.versions(name)?.last().map_or(1, |v| v.version + 1);
        meta.version = version;
        let weights = model.to_safetensors_bytes().map_err(model_err)?;
        let mut batch = sled::Batch::default();
        batch.insert(
            format!("version/{name}/{version:06}").as_bytes(),
            serde_json::to_vec(&meta).map_err(model_err)?,
        );
        batch.insert(format!("weights/{name}/{version:06}").as_bytes(), weights);
        if meta.activated {
            batch.insert(
                format!("active/{name}").as_bytes(),
                version.to_string().as_bytes(),
            );
        }
        self.tree.apply_batch(batch)?;
        self.flush()?;
        tracing::info!(model = name, version, source = %meta.source, activated = meta.activated, "stored model version");
        Ok(version)
    }

    /// Every stored version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionMeta>, LearnApiError> {
        self.tree
            .scan_prefix(format!("version/{name}/"))
            .map(|item| {
                let (_, bytes) = item?;
                serde_json::from_slice(&bytes).map_err(model_err)
            })
            .collect()
    }

    fn active(&self, name: &str) -> Result<Option<u32>, LearnApiError> {
        Ok(self
            .tree
            .get(format!("active/{name}"))?
            .and_then(|b| String::from_utf8_lossy(&b).parse().ok()))
    }

    /// The active version's safetensors bytes.
    pub fn weights(&self, name: &str) -> Result<Vec<u8>, LearnApiError> {
        self.schema(name)?;
        let version = self
            .active(name)?
            .ok_or_else(|| LearnApiError::NoVersion(name.to_string()))?;
        self.tree
            .get(format!("weights/{name}/{version:06}"))?
            .map(|b| b.to_vec())
            .ok_or_else(|| LearnApiError::NoVersion(name.to_string()))
    }

    fn active_model(&self, name: &str) -> Result<Option<(VersionMeta, Model)>, LearnApiError> {
        let Some(version) = self.active(name)? else {
            return Ok(None);
        };
        let schema = self.schema(name)?;
        let meta: VersionMeta = match self.tree.get(format!("version/{name}/{version:06}"))? {
            Some(b) => serde_json::from_slice(&b).map_err(model_err)?,
            None => return Ok(None),
        };
        let bytes = self.weights(name)?;
        let model = Model::from_safetensors_bytes(&schema, &bytes, mc_learn::default_device())
            .map_err(model_err)?;
        Ok(Some((meta, model)))
    }

    /// Performance of the active version (seed 27.4).
    pub fn performance(&self, name: &str) -> Result<Performance, LearnApiError> {
        let schema = self.schema(name)?;
        let (meta, model) = self
            .active_model(name)?
            .ok_or_else(|| LearnApiError::NoVersion(name.to_string()))?;
        let data = self
            .dataset(name)?
            .ok_or_else(|| LearnApiError::NoData(name.to_string()))?;
        let (train, test) = data.split_time(custom::DEFAULT_TRAIN_FRACTION);
        if test.is_empty() || train.is_empty() {
            return Err(LearnApiError::NoData(name.to_string()));
        }
        let started = Instant::now();
        let evaluation = model.evaluate(&test).map_err(model_err)?;
        let elapsed = started.elapsed();
        let comparison = custom::compare(schema.task, &train, &test, evaluation.score());
        let current = comparison.custom_score;
        let baseline = comparison.baseline_score;
        let drift = self.drift(name, &data)?;
        let (accuracy, precision, recall, f1) = match evaluation.scores {
            mc_learn::Scores::Regression { r2, .. } => (r2, None, None, None),
            mc_learn::Scores::Classification {
                accuracy,
                precision,
                recall,
                f1,
            } => (accuracy, Some(precision), Some(recall), Some(f1)),
        };
        Ok(Performance {
            model: name.to_string(),
            version: meta.version,
            source: meta.source,
            accuracy,
            evaluation,
            inference_latency_ms: elapsed.as_secs_f64() * 1e3 / test.len().max(1) as f64,
            baseline_comparison: BaselineComparisonView {
                current,
                baseline,
                improvement_percent: (baseline != 0.0)
                    .then(|| (current - baseline) / baseline.abs() * 100.0),
            },
            drift: DriftView {
                detected: drift.as_ref().is_some_and(|d| d.detected),
                score: drift.as_ref().map_or(0.0, |d| d.score),
                incoming_rows: data.len() - meta.rows_at_training.min(data.len()),
                report: drift,
            },
            precision,
            recall,
            f1,
        })
    }

    /// Runs one campaign job on local data: the moments vector (round 0)
    /// or a model round's local steps (the job's plan: steps, batch size and
    /// learning rate, the same on every participant).
    pub fn run_job(&self, job: &TrainJob) -> Result<(Vec<f32>, u64), String> {
        let data = self
            .dataset(&job.model.name)
            .map_err(|e| e.to_string())?
            .filter(|d| !d.is_empty())
            .ok_or_else(|| format!("no data imported for model {:?}", job.model.name))?;
        if data.features != job.model.features || data.target != job.model.target {
            return Err(format!(
                "the data imported for {:?} has other columns than the campaign's schema",
                job.model.name
            ));
        }
        // Campaigns train on the same first 80 % that custom training uses,
        // so the last 20 % stays held out for performance figures.
        let (data, _) = data.split_time(custom::DEFAULT_TRAIN_FRACTION);
        if data.is_empty() {
            return Err(format!("too few rows for model {:?}", job.model.name));
        }
        match &job.kind {
            TrainKind::Moments => Ok((moments_vector(&job.model, &data), data.len() as u64)),
            TrainKind::Update {
                base,
                moments,
                plan,
                correction,
                seed,
            } => mc_learn::federated::campaign_update(
                &job.model,
                moments,
                base,
                &data,
                plan,
                correction.as_deref(),
                *seed,
                mc_learn::default_device(),
            ),
        }
    }

    /// Stores a finished campaign's model as a new, active version (after
    /// declaring its schema if this node did not know it).
    pub fn store_federated(
        &self,
        model: &FinishedModel,
        now_ms: u64,
    ) -> Result<u32, LearnApiError> {
        let name = &model.model.name;
        let source = format!("federated:{}", model.campaign);
        if let Some(existing) = self
            .versions(name)
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.source == source)
        {
            return Ok(existing.version); // already stored (a restart re-reports it)
        }
        if self.schema(name).is_err() {
            self.declare(model.model.clone())?;
        }
        let normaliser =
            normaliser_from_moments(&model.model, &model.moments).map_err(LearnApiError::Model)?;
        let m = Model::from_flat(
            &model.model,
            normaliser,
            &model.weights,
            mc_learn::default_device(),
        )
        .map_err(model_err)?;
        let data = self.dataset(name)?;
        let (evaluation, rows) = match &data {
            Some(d) if d.len() >= 5 => {
                let (_, test) = d.split_time(custom::DEFAULT_TRAIN_FRACTION);
                (Some(m.evaluate(&test).map_err(model_err)?), d.len())
            }
            _ => (None, data.as_ref().map_or(0, |d| d.len())),
        };
        let meta = VersionMeta {
            version: 0,
            source,
            created_at_ms: now_ms,
            evaluation,
            baseline_vs_custom: None,
            activated: true,
            rows_at_training: rows,
            train_rows: rows,
            model_hash: model.model_hash.clone(),
        };
        self.store_version(name, meta, &m)
    }
}

/// Whether a task is a classifier (for callers that format results).
pub fn is_classifier(task: Task) -> bool {
    task == Task::BinaryClassification
}

/// A shareable handle.
pub type SharedService = Arc<LearnService>;
