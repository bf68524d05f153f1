//! How good a model is, compared with what, and whether its data has moved.
//!
//! - Scores of a regression model: [`r2`], [`mae`] and [`rmse`]; of a
//!   classifier: [`Classification`] (accuracy, precision, recall and F1 at
//!   probability 0.5).
//! - Baselines a custom model has to beat on the same test rows:
//!   [`mean_baseline`] (always the training mean) and
//!   [`last_value_baseline`] (the previous observed value); a
//!   [`BaselineComparison`] reports the difference.
//! - Drift ([`drift`]): the population stability index [`psi`] of each
//!   feature and a check of the model's residuals, combined by a
//!   [`DriftDetector`] into the [`DriftReport`] a node retrains on.
//!
//! Every function takes plain slices and is pure; sums run in `f64` in a
//! fixed order, so results are the same on every node. Mismatched lengths,
//! empty inputs and non-finite values are a [`MetricError`], never a panic or
//! a NaN.

pub mod drift;
#[cfg(test)]
mod tests;

pub use drift::{DEFAULT_BINS, DriftConfig, DriftDetector, DriftError, DriftReport, psi};

use serde::{Deserialize, Serialize};

/// Why a score could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// Targets and predictions differ in number.
    #[error("{predictions} predictions for {targets} targets")]
    LengthMismatch {
        /// Number of targets.
        targets: usize,
        /// Number of predictions.
        predictions: usize,
    },
    /// There is nothing to score (or no training value to predict from).
    #[error("no values")]
    Empty,
    /// A value is NaN or infinite.
    #[error("value {index} is not finite")]
    NonFinite {
        /// Position of the first non-finite value.
        index: usize,
    },
}

fn check_finite(values: &[f32]) -> Result<(), MetricError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MetricError::NonFinite { index }),
        None => Ok(()),
    }
}

fn check_pair(y: &[f32], pred: &[f32]) -> Result<(), MetricError> {
    if y.len() != pred.len() {
        return Err(MetricError::LengthMismatch {
            targets: y.len(),
            predictions: pred.len(),
        });
    }
    if y.is_empty() {
        return Err(MetricError::Empty);
    }
    check_finite(y)?;
    check_finite(pred)
}

fn mean(values: &[f32]) -> f64 {
    values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64
}

/// Coefficient of determination, `1 − SS_res / SS_tot`: 1 is perfect, 0 is
/// as good as predicting the mean, below 0 worse. When every target is equal
/// it is 1 for exact predictions and 0 otherwise.
pub fn r2(y: &[f32], pred: &[f32]) -> Result<f64, MetricError> {
    check_pair(y, pred)?;
    let m = mean(y);
    let (ss_res, ss_tot) = y.iter().zip(pred).fold((0.0, 0.0), |(res, tot), (&t, &p)| {
        let (t, p) = (f64::from(t), f64::from(p));
        (res + (t - p).powi(2), tot + (t - m).powi(2))
    });
    Ok(if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    })
}

/// Mean absolute error.
pub fn mae(y: &[f32], pred: &[f32]) -> Result<f64, MetricError> {
    check_pair(y, pred)?;
    let sum: f64 = y
        .iter()
        .zip(pred)
        .map(|(&t, &p)| (f64::from(t) - f64::from(p)).abs())
        .sum();
    Ok(sum / y.len() as f64)
}

/// Root mean squared error.
pub fn rmse(y: &[f32], pred: &[f32]) -> Result<f64, MetricError> {
    check_pair(y, pred)?;
    let sum: f64 = y
        .iter()
        .zip(pred)
        .map(|(&t, &p)| (f64::from(t) - f64::from(p)).powi(2))
        .sum();
    Ok((sum / y.len() as f64).sqrt())
}

/// Scores of a binary classifier at probability threshold 0.5.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Share of rows classified correctly.
    pub accuracy: f64,
    /// Share of predicted positives that are positive; 0 when nothing is
    /// predicted positive.
    pub precision: f64,
    /// Share of positives predicted positive; 0 when there are no positives.
    pub recall: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
}

impl Classification {
    /// Scores `probabilities` (of the positive class) against `labels`. A
    /// label or probability of at least 0.5 counts as positive.
    pub fn from_probabilities(labels: &[f32], probabilities: &[f32]) -> Result<Self, MetricError> {
        check_pair(labels, probabilities)?;
        let (mut tp, mut fp, mut fneg, mut tn) = (0u64, 0u64, 0u64, 0u64);
        for (&label, &p) in labels.iter().zip(probabilities) {
            match (label >= 0.5, p >= 0.5) {
                (true, true) => tp += 1,
                (false, true) => fp += 1,
                (true, false) => fneg += 1,
                (false, false) => tn += 1,
            }
        }
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                0.0
            } else {
                num as f64 / den as f64
            }
        };
        let precision = ratio(tp, tp + fp);
        let recall = ratio(tp, tp + fneg);
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        Ok(Self {
            accuracy: ratio(tp + tn, tp + fp + fneg + tn),
            precision,
            recall,
            f1,
        })
    }
}

/// Predicts the mean of `train_y` for each of `test_len` rows.
pub fn mean_baseline(train_y: &[f32], test_len: usize) -> Result<Vec<f32>, MetricError> {
    if train_y.is_empty() {
        return Err(MetricError::Empty);
    }
    check_finite(train_y)?;
    Ok(vec![mean(train_y) as f32; test_len])
}

/// Predicts each test row's target as the one observed just before it: the
/// last training target for the first test row, then the previous test
/// target (rows are in time order).
pub fn last_value_baseline(train_y: &[f32], test_y: &[f32]) -> Result<Vec<f32>, MetricError> {
    let Some(&last) = train_y.last() else {
        return Err(MetricError::Empty);
    };
    check_finite(&[last])?;
    check_finite(test_y)?;
    let mut pred = Vec::with_capacity(test_y.len());
    if !test_y.is_empty() {
        pred.push(last);
        pred.extend_from_slice(&test_y[..test_y.len() - 1]);
    }
    Ok(pred)
}

/// A custom model's score next to a baseline's on the same test rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineComparison {
    /// Which baseline (`"mean"`, `"last_value"`, …).
    pub baseline_name: String,
    /// The baseline's score.
    pub baseline_score: f64,
    /// The custom model's score.
    pub custom_score: f64,
    /// How much better the custom model is, in percent of the baseline's
    /// score (negative when worse); 0 when the baseline scores 0.
    pub improvement_percent: f64,
}

impl BaselineComparison {
    /// For a score where lower is better (MAE, RMSE).
    pub fn lower_is_better(
        baseline_name: impl Into<String>,
        baseline_score: f64,
        custom_score: f64,
    ) -> Self {
        Self::new(
            baseline_name.into(),
            baseline_score,
            custom_score,
            baseline_score - custom_score,
        )
    }

    /// For a score where higher is better (R², accuracy, F1).
    pub fn higher_is_better(
        baseline_name: impl Into<String>,
        baseline_score: f64,
        custom_score: f64,
    ) -> Self {
        Self::new(
            baseline_name.into(),
            baseline_score,
            custom_score,
            custom_score - baseline_score,
        )
    }

    /// Compares mean absolute errors on `test_y`.
    pub fn mae(
        baseline_name: impl Into<String>,
        test_y: &[f32],
        baseline_pred: &[f32],
        custom_pred: &[f32],
    ) -> Result<Self, MetricError> {
        Ok(Self::lower_is_better(
            baseline_name,
            mae(test_y, baseline_pred)?,
            mae(test_y, custom_pred)?,
        ))
    }

    fn new(baseline_name: String, baseline_score: f64, custom_score: f64, gain: f64) -> Self {
        let improvement = 100.0 * gain / baseline_score.abs();
        Self {
            baseline_name,
            baseline_score,
            custom_score,
            improvement_percent: if improvement.is_finite() {
                improvement
            } else {
                0.0
            },
        }
    }
}
