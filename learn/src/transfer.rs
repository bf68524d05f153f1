//! Transfer learning: adapt a model trained elsewhere (for example the
//! federation's global model) to one node's data by retraining only its
//! last layers.
//!
//! The report answers "was it worth it?": the test score of the base model
//! as it is, of the fine-tuned model, and of a model trained from scratch on
//! the same rows with the same settings.

use mc_learn_core::Dataset;
use rand::{SeedableRng, rngs::ChaCha8Rng};

use crate::custom::DEFAULT_TRAIN_FRACTION;
use crate::evaluate::Evaluation;
use crate::model::check_data;
use crate::{Model, ModelError, Normaliser, TrainConfig};

pub use mc_learn_core::evaluate::{DEFAULT_FINE_TUNE_EPOCHS, DEFAULT_FINE_TUNE_LEARNING_RATE};

/// Settings of [`fine_tune`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Training settings of the from-scratch model; fine-tuning uses them
    /// too (batch, weight decay, seed, device) but for its own learning
    /// rate and epochs below.
    pub train: TrainConfig,
    /// Adam's learning rate when fine-tuning.
    pub fine_tune_learning_rate: f64,
    /// Passes over the training rows when fine-tuning.
    pub fine_tune_epochs: usize,
    /// Fraction of rows, the earliest, used for training.
    pub train_fraction: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            train: TrainConfig::default(),
            fine_tune_learning_rate: DEFAULT_FINE_TUNE_LEARNING_RATE,
            fine_tune_epochs: DEFAULT_FINE_TUNE_EPOCHS,
            train_fraction: DEFAULT_TRAIN_FRACTION,
        }
    }
}

impl Options {
    /// The settings fine-tuning trains with: [`Options::train`] with the
    /// fine-tuning learning rate and epochs.
    pub fn fine_tune_config(&self) -> TrainConfig {
        TrainConfig {
            learning_rate: self.fine_tune_learning_rate,
            epochs: self.fine_tune_epochs,
            ..self.train
        }
    }
}

/// Why fine-tuning could not run.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// `k_last_layers` is 0 or more than the model has.
    #[error("cannot train the last {k} of {layers} layers")]
    BadLayerCount {
        /// Layers asked to train.
        k: usize,
        /// Layers in the model.
        layers: usize,
    },
    /// The split leaves no training or no test rows.
    #[error("{rows} rows split at {fraction} leave no training or no test rows")]
    BadSplit {
        /// Rows in the table.
        rows: usize,
        /// The train fraction.
        fraction: f64,
    },
    /// The table or the training failed (see [`ModelError`]).
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The outcome of [`fine_tune`].
#[derive(Debug)]
pub struct TransferReport {
    /// The fine-tuned model (the base's normaliser; all layers trainable
    /// again).
    pub model: Model,
    /// Layers kept as they were (the first ones).
    pub frozen_layers: usize,
    /// Layers retrained (the last ones).
    pub trained_layers: usize,
    /// Rows trained on (the earliest).
    pub train_rows: usize,
    /// The base model on the test rows.
    pub base: Evaluation,
    /// The fine-tuned model on the test rows.
    pub fine_tuned: Evaluation,
    /// A model trained from scratch on the same rows, on the test rows.
    pub scratch: Evaluation,
    /// Score gain of fine-tuning over the base, in % of the base's score
    /// (`None` when the base scored 0).
    pub improvement_over_base_pct: Option<f64>,
    /// Score gain of fine-tuning over from-scratch training, in % of the
    /// from-scratch score (`None` when it scored 0).
    pub improvement_over_scratch_pct: Option<f64>,
}

/// Copies `base`, retrains only its last `k_last_layers` Linear layers on
/// the earliest rows of `data` (all its layers, to personalise a federated
/// model, is what measured best: see [`DEFAULT_FINE_TUNE_LEARNING_RATE`]),
/// and scores base, fine-tuned and
/// from-scratch models on the latest rows.
pub fn fine_tune(
    base: &Model,
    data: &Dataset,
    k_last_layers: usize,
    opts: &Options,
) -> Result<TransferReport, TransferError> {
    let layers = base.mlp().num_layers();
    if k_last_layers == 0 || k_last_layers > layers {
        return Err(TransferError::BadLayerCount {
            k: k_last_layers,
            layers,
        });
    }
    check_data(base.schema(), data)?;
    let (train_rows, test_rows) = data.split_time(opts.train_fraction);
    if train_rows.is_empty() || test_rows.is_empty() {
        return Err(TransferError::BadSplit {
            rows: data.len(),
            fraction: opts.train_fraction,
        });
    }

    let mut model = base.to_device(opts.train.device)?;
    model.freeze_all_but_last(k_last_layers);
    model.train(&train_rows, &opts.fine_tune_config())?;
    model.freeze_all_but_last(layers);

    let schema = base.schema();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.train.seed);
    let mut scratch = Model::init(
        schema,
        Normaliser::fit(schema, &train_rows)?,
        &mut rng,
        opts.train.device,
    )?;
    scratch.train_with_rng(&train_rows, &opts.train, &mut rng)?;

    let base_eval = base.evaluate(&test_rows)?;
    let fine_tuned = model.evaluate(&test_rows)?;
    let scratch_eval = scratch.evaluate(&test_rows)?;
    Ok(TransferReport {
        model,
        frozen_layers: layers - k_last_layers,
        trained_layers: k_last_layers,
        train_rows: train_rows.len(),
        improvement_over_base_pct: percent_gain(fine_tuned.score(), base_eval.score()),
        improvement_over_scratch_pct: percent_gain(fine_tuned.score(), scratch_eval.score()),
        base: base_eval,
        fine_tuned,
        scratch: scratch_eval,
    })
}

/// `(new − old) / |old|` in %, `None` when `old` is 0.
fn percent_gain(new: f64, old: f64) -> Option<f64> {
    (old != 0.0).then(|| (new - old) / old.abs() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fine_tuning_trains_at_its_own_rate_and_epochs_with_the_rest_shared() {
        let opts = Options {
            train: TrainConfig {
                epochs: 7,
                batch_size: 32,
                learning_rate: 0.01,
                weight_decay: 0.5,
                seed: 9,
                ..TrainConfig::default()
            },
            fine_tune_learning_rate: 0.003,
            fine_tune_epochs: 11,
            train_fraction: 0.8,
        };
        let tune = opts.fine_tune_config();
        assert_eq!((tune.learning_rate, tune.epochs), (0.003, 11));
        assert_eq!(
            (tune.batch_size, tune.weight_decay, tune.seed, tune.device),
            (32, 0.5, 9, opts.train.device)
        );
        let defaults = Options::default();
        assert!(defaults.fine_tune_learning_rate < defaults.train.learning_rate);
    }
}
