//! Scores of predictions against targets: R² and MAE for regression;
//! accuracy, precision, recall and F1 (at probability 0.5) for binary
//! classification.

use std::time::Duration;

use mc_learn_core::Task;
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
