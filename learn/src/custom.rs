//! Custom training: one node trains a model on its own table, compares it
//! with naive baselines, and activates it only if it scores well enough.
//!
//! The table is split by time — the first 80 % trains, the last 20 % tests —
//! so the test rows are "the future" of the training rows, as in use.

use mc_learn_core::{Dataset, ModelSchema};
use rand::{SeedableRng, rngs::ChaCha8Rng};

use crate::evaluate::Evaluation;
use crate::model::check_data;
use crate::{Model, ModelError, Normaliser, TrainConfig, TrainReport};
pub use mc_learn_core::evaluate::{
    Baseline, BaselineComparison, DEFAULT_ACTIVATION_FLOOR, DEFAULT_MIN_ROWS,
    DEFAULT_TRAIN_FRACTION, compare,
};

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
