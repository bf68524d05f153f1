//! Scores of predictions against targets: R² and MAE for regression;
//! accuracy, precision, recall and F1 (at probability 0.5) for binary
//! classification.

use std::time::Duration;

use crate::{Dataset, Task};
use serde::{Deserialize, Serialize};

/// The scores of one model (or baseline) on one table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Scores {
    /// Regression scores, in target units.
    Regression {
        /// Coefficient of determination (1 is perfect; 0 is the mean).
        r2: f64,
        /// Mean absolute error.
        mae: f64,
    },
    /// Binary classification scores at probability 0.5.
    Classification {
        /// Fraction of rows classified correctly.
        accuracy: f64,
        /// Of the rows predicted 1, the fraction that are 1 (0 if none).
        precision: f64,
        /// Of the rows that are 1, the fraction predicted 1 (0 if none).
        recall: f64,
        /// Harmonic mean of precision and recall (0 if both are 0).
        f1: f64,
    },
}

impl Scores {
    /// Scores `predictions` (target units for regression, probabilities for
    /// classification) against `targets`. Both have the same length.
    pub fn of(task: Task, predictions: &[f32], targets: &[f32]) -> Self {
        match task {
            Task::Regression => Scores::Regression {
                r2: r2(predictions, targets),
                mae: mae(predictions, targets),
            },
            Task::BinaryClassification => classification(predictions, targets),
        }
    }

    /// The one number a model is judged by: R² for regression, F1 for
    /// classification (higher is better).
    pub fn score(&self) -> f64 {
        match *self {
            Scores::Regression { r2, .. } => r2,
            Scores::Classification { f1, .. } => f1,
        }
    }
}

/// How a model did on a table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Number of rows scored.
    pub rows: usize,
    /// The scores.
    pub scores: Scores,
    /// Wall-clock time of the batched forward pass divided by the rows: a
    /// measurement of this machine, not an input to any decision.
    pub measured_inference_time_per_row: Duration,
}

impl Evaluation {
    /// [`Scores::score`] of these scores.
    pub fn score(&self) -> f64 {
        self.scores.score()
    }
}

/// Fewest rows custom training accepts by default.
pub const DEFAULT_MIN_ROWS: usize = 1000;
/// Default activation floor on [`Scores::score`] (R² or F1).
pub const DEFAULT_ACTIVATION_FLOOR: f64 = 0.7;
/// Default fraction of rows (the earliest) used for training.
pub const DEFAULT_TRAIN_FRACTION: f64 = 0.8;

/// Adam's learning rate when fine-tuning: a fifth of training from scratch
/// (`mc_learn::TrainConfig::default`), so that the base model's fit is adjusted to
/// the local rows rather than overwritten by them.
///
/// Measured by personalising a campaign's model in the federated benchmark
/// (`mc-learn bench federated`, 20 organisations, mean held-out MAE on
/// data seeds 1 / 2 / 3, central 5.99 / 11.86 / 5.96): the last two of the
/// three layers at 10⁻³ for 40 epochs gave 6.52 / 11.15 / 6.21; all three
/// at 3·10⁻⁴ for 40 epochs 6.20 / 12.03 / 6.05; at 2·10⁻⁴ for 80 epochs
/// 6.03 / 11.81 / 5.99 (the defaults); for 120 epochs 6.12 / 10.96 / 6.08;
/// at 10⁻⁴ for 80 epochs 6.11 / 12.30 / 6.03.
pub const DEFAULT_FINE_TUNE_LEARNING_RATE: f64 = 2e-4;
/// Passes over the training rows when fine-tuning (see
/// [`DEFAULT_FINE_TUNE_LEARNING_RATE`]).
pub const DEFAULT_FINE_TUNE_EPOCHS: usize = 80;

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

// TODO(metrics): replace these with mc_learn_core::metrics (r2, mae,
// Classification) once that module lands.

/// R² = 1 − SS_res / SS_tot. Constant targets (SS_tot = 0) give 1 when
/// matched exactly and 0 otherwise.
fn r2(predictions: &[f32], targets: &[f32]) -> f64 {
    if targets.is_empty() {
        return 0.0;
    }
    let n = targets.len() as f64;
    let mean = targets.iter().map(|&y| f64::from(y)).sum::<f64>() / n;
    let ss_tot: f64 = targets.iter().map(|&y| (f64::from(y) - mean).powi(2)).sum();
    let ss_res: f64 = predictions
        .iter()
        .zip(targets)
        .map(|(&p, &y)| (f64::from(p) - f64::from(y)).powi(2))
        .sum();
    if ss_tot == 0.0 {
        if ss_res == 0.0 { 1.0 } else { 0.0 }
    } else {
        1.0 - ss_res / ss_tot
    }
}

fn mae(predictions: &[f32], targets: &[f32]) -> f64 {
    if targets.is_empty() {
        return 0.0;
    }
    predictions
        .iter()
        .zip(targets)
        .map(|(&p, &y)| (f64::from(p) - f64::from(y)).abs())
        .sum::<f64>()
        / targets.len() as f64
}

fn classification(probabilities: &[f32], targets: &[f32]) -> Scores {
    let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
    for (&p, &y) in probabilities.iter().zip(targets) {
        match (p >= 0.5, y >= 0.5) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Scores::Classification {
        accuracy: ratio(tp + tn, tp + fp + tn + fn_),
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_scores() {
        let s = Scores::of(Task::Regression, &[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        assert_eq!(s, Scores::Regression { r2: 1.0, mae: 0.0 });
        let s = Scores::of(Task::Regression, &[2.0, 2.0, 2.0], &[1.0, 2.0, 3.0]);
        assert_eq!(s.score(), 0.0);
    }

    #[test]
    fn classification_scores() {
        let s = Scores::of(
            Task::BinaryClassification,
            &[0.9, 0.8, 0.2, 0.6],
            &[1.0, 1.0, 0.0, 0.0],
        );
        let Scores::Classification {
            accuracy,
            precision,
            recall,
            f1,
        } = s
        else {
            panic!("{s:?}");
        };
        assert_eq!((accuracy, recall), (0.75, 1.0));
        assert!((precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((f1 - 0.8).abs() < 1e-12);
    }
}
