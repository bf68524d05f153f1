//! The node's models: declared schemas, imported data, trained versions and
//! the local work federated campaigns ask for.
//!
//! Everything here stays on the node. Imported rows are stored in the
//! node's sled database and only ever read by local training; what leaves
//! the node is what the core sends — signed weights and moments.
//!
//! The HTTP API and the `mc-node learn …` subcommands call the same
//! [`ModelRegistry`] methods; training is CPU- or GPU-bound, so async callers
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

use std::sync::{Arc, Mutex, MutexGuard};

use mc_learn_core::csv::{CsvLimits, parse_csv};
use mc_learn_core::evaluate::{DEFAULT_MIN_ROWS, DEFAULT_TRAIN_FRACTION};
use mc_learn_core::plan::moments_vector;
use mc_learn_core::schema::{self, ModelSchema};
use mc_learn_core::worker::{Failure, Job, JsonText, Reply, TrainReportKind};
use mc_learn_core::{Dataset, Task};

use mc_core::{FinishedModel, TrainJob, TrainKind};

use crate::worker::{Worker, WorkerStatus};

mod assess;
mod views;

pub use views::{
    BaselineComparisonView, DriftView, ImportReport, LearnApiError, MAX_EPOCHS, ModelInfo,
    Performance, TrainRequest, TrainSummary, TransferSummary, Tuning, VersionMeta,
};
use views::{check_epochs, model_err};

/// The model registry of one node: schemas, rows and versions in sled;
/// training, scoring and campaign steps on the learning [`Worker`].
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    tree: sled::Tree,
    db: sled::Db,
    worker: Worker,
    /// Held by every read-modify-write of the tree (appending rows,
    /// numbering a version), never while a model trains.
    writes: Arc<Mutex<()>>,
}

impl ModelRegistry {
    /// Opens the `learn` tree of the node's database; model work goes to
    /// `worker`.
    pub fn open(db: &sled::Db, worker: Worker) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree("learn")?,
            db: db.clone(),
            worker,
            writes: Arc::new(Mutex::new(())),
        })
    }

    /// The learning worker's counters.
    pub fn worker_status(&self) -> WorkerStatus {
        self.worker.status()
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `job` on the worker; a [`Reply::Failed`] becomes the matching
    /// [`LearnApiError`].
    fn work(&self, job: &Job) -> Result<Reply, LearnApiError> {
        match self.worker.run(job)? {
            Reply::Failed { kind, message } => Err(match kind {
                Failure::TrainingRefused => LearnApiError::Custom(message),
                Failure::TransferRefused => LearnApiError::Transfer(message),
                Failure::Model | Failure::Protocol => LearnApiError::Model(message),
            }),
            reply => Ok(reply),
        }
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
        let data = {
            let _guard = self.write_lock();
            let mut data = match (replace, self.dataset(name)?) {
                (false, Some(existing)) => existing,
                _ => Dataset::empty(schema.features.clone(), schema.target.clone()),
            };
            data.extend(&new);
            let bytes = postcard::to_stdvec(&data).map_err(model_err)?;
            self.tree.insert(format!("data/{name}"), bytes)?;
            self.flush()?;
            data
        };
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
            if detected && retrain_on_drift && data.len() >= DEFAULT_MIN_ROWS {
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
        let epochs = request.epochs.map(check_epochs).transpose()?;
        let rows_at_training = data.len();
        let Reply::Trained {
            weights,
            model_hash,
            report: TrainReportKind::Custom(report),
        } = self.work(&Job::Train {
            schema: JsonText::encode(&schema),
            data,
            epochs,
            learning_rate: request.learning_rate,
            seed: request.seed,
            min_rows: request.min_rows,
            activation_floor: request.activation_floor,
        })?
        else {
            return Err(unexpected("train"));
        };
        let report = report.decode().map_err(model_err)?;
        let meta = VersionMeta {
            version: 0,
            source: "custom".into(),
            created_at_ms: now_ms,
            evaluation: Some(report.evaluation),
            baseline_vs_custom: Some(
                serde_json::to_value(report.baseline_vs_custom).map_err(model_err)?,
            ),
            activated: report.activated,
            rows_at_training,
            train_rows: report.train_rows,
            model_hash,
        };
        let version = self.store_version(name, meta, weights)?;
        Ok(TrainSummary {
            version,
            activated: report.activated,
            score: report.score,
            activation_floor: report.activation_floor,
            train_rows: report.train_rows,
            test_rows: report.test_rows,
            evaluation: report.evaluation,
            baseline_vs_custom: report.baseline_vs_custom,
        })
    }

    /// Transfer learning (seed 27.2): fine-tunes the last `k` layers of the
    /// active version (or of `base_safetensors`) on the node's data, for
    /// `tuning`'s epochs at its learning rate (the worker's defaults,
    /// `mc_learn::transfer::Options`, for those absent).
    pub fn transfer(
        &self,
        name: &str,
        k: usize,
        base_safetensors: Option<&[u8]>,
        tuning: Tuning,
        now_ms: u64,
    ) -> Result<TransferSummary, LearnApiError> {
        let epochs = tuning.epochs.map(check_epochs).transpose()?;
        if let Some(rate) = tuning.learning_rate {
            mc_core::learning::check_learning_rate(rate).map_err(LearnApiError::BadRequest)?;
        }
        let schema = self.schema(name)?;
        let data = self
            .dataset(name)?
            .ok_or_else(|| LearnApiError::NoData(name.to_string()))?;
        let (base, base_name) = match base_safetensors {
            Some(bytes) => (bytes.to_vec(), "uploaded".to_string()),
            None => {
                let (meta, weights) = self
                    .active_version(name)?
                    .ok_or_else(|| LearnApiError::NoVersion(name.to_string()))?;
                (weights, format!("version {}", meta.version))
            }
        };
        let rows_at_training = data.len();
        let Reply::Trained {
            weights,
            model_hash,
            report: TrainReportKind::Transfer(report),
        } = self.work(&Job::Transfer {
            schema: JsonText::encode(&schema),
            data,
            base,
            k,
            epochs,
            learning_rate: tuning.learning_rate,
        })?
        else {
            return Err(unexpected("transfer"));
        };
        let report = report.decode().map_err(model_err)?;
        let meta = VersionMeta {
            version: 0,
            source: "transfer".into(),
            created_at_ms: now_ms,
            evaluation: Some(report.fine_tuned),
            baseline_vs_custom: None,
            activated: true,
            rows_at_training,
            train_rows: report.train_rows,
            model_hash,
        };
        let version = self.store_version(name, meta, weights)?;
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
    /// Numbering and storing happen under the write lock, so concurrent
    /// trainings get distinct versions.
    fn store_version(
        &self,
        name: &str,
        mut meta: VersionMeta,
        weights: Vec<u8>,
    ) -> Result<u32, LearnApiError> {
        let _guard = self.write_lock();
        let version = self.versions(name)?.last().map_or(1, |v| v.version + 1);
        meta.version = version;
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

    /// The active version's metadata and safetensors bytes.
    fn active_version(&self, name: &str) -> Result<Option<(VersionMeta, Vec<u8>)>, LearnApiError> {
        let Some(version) = self.active(name)? else {
            return Ok(None);
        };
        let meta: VersionMeta = match self.tree.get(format!("version/{name}/{version:06}"))? {
            Some(b) => serde_json::from_slice(&b).map_err(model_err)?,
            None => return Ok(None),
        };
        Ok(Some((meta, self.weights(name)?)))
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
        let (data, _) = data.split_time(DEFAULT_TRAIN_FRACTION);
        if data.is_empty() {
            return Err(format!("too few rows for model {:?}", job.model.name));
        }
        match &job.kind {
            // Round 0 needs no model; the worker starts meanwhile, so that
            // round 1 does not wait for libtorch to load.
            TrainKind::Moments => {
                if let Err(error) = self.worker.prestart() {
                    tracing::warn!(%error, "cannot start the learning worker");
                }
                Ok((moments_vector(&job.model, &data), data.len() as u64))
            }
            TrainKind::Update {
                base,
                moments,
                plan,
                correction,
                seed,
            } => match self.work(&Job::Update {
                schema: JsonText::encode(&job.model),
                moments: moments.to_vec(),
                base: base.to_vec(),
                data,
                plan: *plan,
                correction: correction.as_deref().map(<[f32]>::to_vec),
                seed: *seed,
            }) {
                Ok(Reply::Updated { weights, rows }) => Ok((weights, rows)),
                Ok(_) => Err(unexpected("update").to_string()),
                Err(e) => Err(e.to_string()),
            },
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
        let data = self.dataset(name)?;
        let rows = data.as_ref().map_or(0, Dataset::len);
        let test = data
            .filter(|d| d.len() >= 5)
            .map(|d| d.split_time(DEFAULT_TRAIN_FRACTION).1);
        let Reply::Finished {
            weights,
            evaluation,
        } = self.work(&Job::Finish {
            schema: JsonText::encode(&model.model),
            moments: model.moments.clone(),
            weights: model.weights.clone(),
            test,
        })?
        else {
            return Err(unexpected("finish"));
        };
        let evaluation = evaluation
            .map(|e| e.decode())
            .transpose()
            .map_err(model_err)?;
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
        self.store_version(name, meta, weights)
    }
}

/// Whether a task is a classifier (for callers that format results).
pub fn is_classifier(task: Task) -> bool {
    task == Task::BinaryClassification
}

/// A worker reply of the wrong kind for its job: a bug in the worker.
fn unexpected(job: &str) -> LearnApiError {
    model_err(format!(
        "the learning worker answered a {job} job with another kind of reply"
    ))
}
