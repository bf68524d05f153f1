//! The learning worker's protocol: what a node asks the process that holds
//! libtorch, and what that process answers.
//!
//! A node does not link libtorch. When a model has to be trained, scored or
//! stepped in a campaign round, the node starts a worker process
//! (`mc-learn-worker`), writes one [`Job`] frame to its standard input and
//! reads one [`Reply`] frame from its standard output; the worker stays up
//! for the next job and the node stops it once it has been idle for a while.
//! The node keeps everything stored (rows, versions, weights); a job carries
//! all its inputs, so a worker holds no state and a dead one is replaced by a
//! fresh one without loss.
//!
//! A frame is a 4-byte little-endian length and that many bytes of postcard.
//! Values whose serde form postcard cannot read back (internally tagged
//! enums, skipped fields: a [`ModelSchema`], an [`Evaluation`]) travel as
//! [`JsonText`], their JSON text inside the frame.

use std::io::{self, Read, Write};
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::evaluate::{BaselineComparison, Evaluation};
use crate::plan::StepPlan;
use crate::{Dataset, ModelSchema};

/// The largest frame either side accepts: a 1M-parameter model with its
/// rows fits many times over; a corrupt length is refused before allocating.
pub const MAX_FRAME_BYTES: u32 = 1 << 30;

/// A value carried as its JSON text (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JsonText<T> {
    text: String,
    #[serde(skip)]
    kind: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> JsonText<T> {
    /// `value` as JSON text.
    pub fn encode(value: &T) -> Self {
        Self {
            // The types carried here are plain data: serialising them to
            // JSON cannot fail.
            text: serde_json::to_string(value).unwrap_or_default(),
            kind: PhantomData,
        }
    }

    /// The value back.
    pub fn decode(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.text)
    }
}

/// One piece of work for the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Job {
    /// Custom training on the node's rows: the first 80 % train, the last
    /// 20 % test; every `None` takes the trainer's default.
    Train {
        /// The model.
        schema: JsonText<ModelSchema>,
        /// The node's rows, in time order.
        data: Dataset,
        /// Passes over the training rows.
        epochs: Option<usize>,
        /// Adam's learning rate.
        learning_rate: Option<f64>,
        /// Seed of the initial weights and the minibatch order.
        seed: Option<u64>,
        /// Fewest rows accepted.
        min_rows: Option<usize>,
        /// Test score a model needs to be activated.
        activation_floor: Option<f64>,
    },
    /// Fine-tunes the last `k` layers of `base` on the node's rows.
    Transfer {
        /// The model.
        schema: JsonText<ModelSchema>,
        /// The node's rows, in time order.
        data: Dataset,
        /// The base model's safetensors bytes.
        #[serde(with = "crate::wire::byte_vec")]
        base: Vec<u8>,
        /// Layers to train, counted from the output.
        k: usize,
        /// Fine-tuning epochs.
        epochs: Option<usize>,
        /// Fine-tuning learning rate.
        learning_rate: Option<f64>,
    },
    /// Scores a stored model on `evaluate` and predicts each of `predict`.
    Assess {
        /// The model.
        schema: JsonText<ModelSchema>,
        /// Its safetensors bytes.
        #[serde(with = "crate::wire::byte_vec")]
        weights: Vec<u8>,
        /// Rows to score the model on.
        evaluate: Option<Dataset>,
        /// Tables to predict (drift checks compare residuals).
        predict: Vec<Dataset>,
    },
    /// A campaign round's local steps from the round's base weights.
    Update {
        /// The model.
        schema: JsonText<ModelSchema>,
        /// The pooled moments of round 0 (the shared normaliser).
        moments: Vec<f32>,
        /// The round's base weights, flat.
        base: Vec<f32>,
        /// The rows to train on.
        data: Dataset,
        /// Steps, batch size and learning rate of the round.
        plan: StepPlan,
        /// Drift correction added after every step.
        correction: Option<Vec<f32>>,
        /// Minibatch order.
        seed: u64,
    },
    /// Turns a finished campaign's flat weights into a stored model: its
    /// safetensors bytes and, with `test` rows, its scores.
    Finish {
        /// The model.
        schema: JsonText<ModelSchema>,
        /// The pooled moments of round 0.
        moments: Vec<f32>,
        /// The final global weights, flat.
        weights: Vec<f32>,
        /// Held-out rows to score the model on.
        test: Option<Dataset>,
    },
}

impl Job {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Train { .. } => "train",
            Job::Transfer { .. } => "transfer",
            Job::Assess { .. } => "assess",
            Job::Update { .. } => "update",
            Job::Finish { .. } => "finish",
        }
    }
}

/// What custom training reports besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainedReport {
    /// Rows trained on (the earliest).
    pub train_rows: usize,
    /// Rows tested on (the latest).
    pub test_rows: usize,
    /// Scores on the test rows.
    pub evaluation: Evaluation,
    /// The model against the naive predictors.
    pub baseline_vs_custom: BaselineComparison,
    /// R² or F1 on the test rows.
    pub score: f64,
    /// The floor the score was held to.
    pub activation_floor: f64,
    /// Whether `score ≥ activation_floor`.
    pub activated: bool,
}

/// What fine-tuning reports besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferredReport {
    /// Rows fine-tuned on.
    pub train_rows: usize,
    /// Layers trained.
    pub trained_layers: usize,
    /// Layers kept frozen.
    pub frozen_layers: usize,
    /// The base model as it was, on the test rows.
    pub base: Evaluation,
    /// The fine-tuned model on the test rows.
    pub fine_tuned: Evaluation,
    /// A model trained from scratch on the same rows.
    pub scratch: Evaluation,
    /// Score gain over the base, in %.
    pub improvement_over_base_pct: Option<f64>,
    /// Score gain over from-scratch training, in %.
    pub improvement_over_scratch_pct: Option<f64>,
}

/// The worker's answer to one [`Job`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// A model was trained ([`Job::Train`]) or fine-tuned ([`Job::Transfer`]).
    Trained {
        /// Its safetensors bytes.
        #[serde(with = "crate::wire::byte_vec")]
        weights: Vec<u8>,
        /// [`crate::model_hash`] of its flat weights.
        model_hash: String,
        /// What training measured.
        report: TrainReportKind,
    },
    /// [`Job::Assess`]'s scores and predictions.
    Assessed {
        /// Scores on the `evaluate` rows.
        evaluation: Option<JsonText<Evaluation>>,
        /// Nanoseconds the scoring took (a measurement, not an input).
        evaluate_nanos: u64,
        /// One prediction vector per `predict` table.
        predictions: Vec<Vec<f32>>,
    },
    /// [`Job::Update`]'s new weights and the rows they were trained on.
    Updated {
        /// The new flat weights.
        weights: Vec<f32>,
        /// Rows trained on (FedAvg's weight).
        rows: u64,
    },
    /// [`Job::Finish`]'s model.
    Finished {
        /// Its safetensors bytes.
        #[serde(with = "crate::wire::byte_vec")]
        weights: Vec<u8>,
        /// Scores on the `test` rows.
        evaluation: Option<JsonText<Evaluation>>,
    },
    /// The job could not be done.
    Failed {
        /// Which kind of failure.
        kind: Failure,
        /// What went wrong, for the user.
        message: String,
    },
}

/// The report of [`Reply::Trained`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainReportKind {
    /// Of custom training.
    Custom(JsonText<TrainedReport>),
    /// Of fine-tuning.
    Transfer(JsonText<TransferredReport>),
}

/// Why a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    /// Custom training refused the rows (too few, no split) or failed.
    TrainingRefused,
    /// Fine-tuning refused the base or the rows.
    TransferRefused,
    /// A model, weight file or table did not fit (bad safetensors, wrong
    /// columns, bad moments).
    Model,
    /// The job itself could not be read.
    Protocol,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The pipe failed or closed mid-frame.
    #[error("worker pipe: {0}")]
    Io(#[from] io::Error),
    /// The length prefix is beyond [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(u64),
    /// The bytes are not a frame of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Writes `value` as one frame and flushes.
pub fn write_frame<T: Serialize>(out: &mut impl Write, value: &T) -> Result<(), FrameError> {
    let bytes = postcard::to_stdvec(value)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&n| n <= MAX_FRAME_BYTES)
        .ok_or(FrameError::TooLarge(bytes.len() as u64))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}

/// Reads one frame; `Ok(None)` when the other side closed the pipe between
/// frames.
pub fn read_frame<T: DeserializeOwned>(input: &mut impl Read) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < len.len() {
        match input.read(&mut len[filled..])? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            n => filled += n,
        }
    }
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(u64::from(len)));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes)?;
    Ok(Some(postcard::from_bytes(&bytes)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    fn job() -> Job {
        let schema = schema::builtin().remove(0);
        let data = Dataset::empty(schema.features.clone(), schema.target.clone());
        Job::Update {
            schema: JsonText::encode(&schema),
            moments: vec![0.5, -0.0, f32::MIN_POSITIVE],
            base: vec![1.0, 2.0],
            data,
            plan: StepPlan {
                steps: 3,
                batch_size: 16,
                learning_rate: 1e-3,
            },
            correction: None,
            seed: 7,
        }
    }

    #[test]
    fn frames_round_trip_and_eof_between_frames_is_none() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &job()).unwrap();
        write_frame(&mut pipe, &job()).unwrap();
        let mut input = pipe.as_slice();
        assert_eq!(read_frame::<Job>(&mut input).unwrap(), Some(job()));
        assert_eq!(read_frame::<Job>(&mut input).unwrap(), Some(job()));
        assert!(read_frame::<Job>(&mut input).unwrap().is_none());
        let Job::Update { schema, .. } = job() else {
            unreachable!()
        };
        assert_eq!(schema.decode().unwrap(), schema::builtin().remove(0));
    }

    #[test]
    fn a_cut_or_oversized_or_garbled_frame_is_an_error() {
        let mut pipe = Vec::new();
        write_frame(&mut pipe, &job()).unwrap();
        let cut = &pipe[..pipe.len() - 1];
        assert!(matches!(
            read_frame::<Job>(&mut &cut[..]),
            Err(FrameError::Io(_))
        ));
        let huge = (MAX_FRAME_BYTES + 1).to_le_bytes();
        assert!(matches!(
            read_frame::<Job>(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        let garbled = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<Job>(&mut &garbled[..]),
            Err(FrameError::Malformed(_))
        ));
    }
}
