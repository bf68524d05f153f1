//! Custom training: one node trains a model on its own table, compares it
//! with naive baselines, and activates it only if it scores well enough.
//!
//! The table is split by time — the first 80 % trains, the last 20 % tests —
//! so the test rows are "the future" of the training rows, as in use.

use mc_learn_core::{Dataset, ModelSchema, Task};
use rand::{SeedableRng, rngs::ChaCha8Rng};
use serde::{Deserialize, Serialize};

use crate::evaluate::{Evaluation, Scores};
use crate::model::check_data;
use crate::{Model, ModelError, Normaliser, TrainConfig, TrainReport};

/// Fewest rows custom training accepts by default.
pub const DEFAULT_MIN_ROWS: usize = 1000;
/// Default activation floor on [`Scores::score`] (R² or F1).
pub const DEFAULT_ACTIVATION_FLOOR: f64 = 0.7;
/// Default fraction of rows (the earliest) used for training.
pub const DEFAULT_TRAIN_FRACTION: f64 = 0.8;

/// Settings of [`train`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Training settings (epochs, batch, learning rate, seed, device).
    pub train: TrainConfig,
    /// Fewest rows accepted; federated participants may be given another.
    pub min_rows: usize,
    /// The model is activated when its test score (R² for regression, F1
    /// for classification) is at least this.
    pub activation_floor: f64,
    /// Fraction of rows, the earliest, used for training.
    pub train_fraction: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            train: TrainConfig::default(),
            min_rows: DEFAULT_MIN_ROWS,
            activation_floor: DEFAULT_ACTIVATION_FLOOR,
            train_fraction: DEFAULT_TRAIN_FRACTION,
        }
    }
}

/// Why custom training did not produce a model.
#[derive(Debug, thiserror::Error)]
pub enum CustomError {
    /// Fewer rows than [`Options::min_rows`].
    #[error("{rows} rows; custom training needs at least {min}")]
    TooFewRows {
        /// Rows in the table.
        rows: usize,
        /// The minimum.
        min: usize,
    },
    /// The split leaves no training or no test rows.
    #[error("a train fraction of {0} leaves no training or no test rows")]
    BadSplit(f64),
    /// The table or the training failed (see [`ModelError`]).
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A naive predictor a model must beat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// Always the training rows' mean target (classification: the majority
    /// class).
    Mean,
    /// The previous row's target (the first test row gets the last
    /// training row's).
    LastValue,
}

/// The model against the naive predictors on the same test rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    /// Scores of the mean predictor.
    pub mean: Scores,
    /// Scores of the last-value predictor.
    pub last_value: Scores,
    /// The baseline with the higher score.
    pub better: Baseline,
    /// That baseline's score.
    pub baseline_score: f64,
    /// The model's score.
    pub custom_score: f64,
    /// `custom_score − baseline_score`: positive when the model wins.
    pub margin: f64,
}

/// The outcome of custom training.
#[derive(Debug)]
pub struct CustomReport {
    /// The trained model (normaliser fitted on the training rows).
    pub model: Model,
    /// Rows trained on (the earliest).
    pub train_rows: usize,
    /// Rows tested on (the latest).
    pub test_rows: usize,
    /// What training did.
    pub training: TrainReport,
    /// Scores on the test rows.
    pub evaluation: Evaluation,
    /// The model against the naive predictors.
    pub baseline_vs_custom: BaselineComparison,
    /// [`Evaluation::score`]: R² or F1 on the test rows.
    pub score: f64,
    /// The floor the score was held to.
    pub activation_floor: f64,
    /// Whether `score ≥ activation_floor`.
    pub activated: bool,
}

/// Trains a model of `schema` on `data` (rows in time order) and reports
/// how it does on the latest rows. A model below the floor is still
/// returned, with `activated: false`.
pub fn train(
    schema: &ModelSchema,
    data: &Dataset,
    opts: &Options,
) -> Result<CustomReport, CustomError> {
    if data.len() < opts.min_rows {
        return Err(CustomError::TooFewRows {
            rows: data.len(),
            min: opts.min_rows,
        });
    }
    schema.validate().map_err(ModelError::from)?;
    check_data(schema, data)?;
    let (train_rows, test_rows) = data.split_time(opts.train_fraction);
    if train_rows.is_empty() || test_rows.is_empty() {
        return Err(CustomError::BadSplit(opts.train_fraction));
    }
    let normaliser = Normaliser::fit(schema, &train_rows)?;
    // One seeded stream: the initial weights, then the minibatch order.
    let mut rng = ChaCha8Rng::seed_from_u64(opts.train.seed);
    let mut model = Model::init(schema, normaliser, &mut rng, opts.train.device)?;
    let training = model.train_with_rng(&train_rows, &opts.train, &mut rng)?;
    let evaluation = model.evaluate(&test_rows)?;
    let baseline_vs_custom = compare(schema.task, &train_rows, &test_rows, evaluation.score());
    let score = evaluation.score();
    Ok(CustomReport {
        model,
        train_rows: train_rows.len(),
        test_rows: test_rows.len(),
        training,
        evaluation,
        baseline_vs_custom,
        score,
        activation_floor: opts.activation_floor,
        activated: score >= opts.activation_floor,
    })
}

/// Scores both baselines on `test` (with `train` as their past) against a
/// model's `custom_score`.
pub fn compare(
    task: Task,
    train: &Dataset,
    test: &Dataset,
    custom_score: f64,
) -> BaselineComparison {
    let mean_target =
        train.y.iter().map(|&v| f64::from(v)).sum::<f64>() / train.len().max(1) as f64;
    let mean_prediction = match task {
        Task::Regression => mean_target as f32,
        Task::BinaryClassification => {
            if mean_target >= 0.5 {
                1.0
            } else {
                0.0
            }
        }
    };
    let mean = Scores::of(task, &vec![mean_prediction; test.len()], &test.y);
    let previous = train.y.last().copied().unwrap_or(mean_prediction);
    let last_value_predictions: Vec<f32> = std::iter::once(previous)
        .chain(test.y.iter().copied())
        .take(test.len())
        .collect();
    let last_value = Scores::of(task, &last_value_predictions, &test.y);
    let (better, baseline_score) = if last_value.score() > mean.score() {
        (Baseline::LastValue, last_value.score())
    } else {
        (Baseline::Mean, mean.score())
    };
    BaselineComparison {
        mean,
        last_value,
        better,
        baseline_score,
        custom_score,
        margin: custom_score - baseline_score,
    }
}
