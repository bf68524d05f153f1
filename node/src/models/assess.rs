//! Scoring a stored model: its performance on the held-out rows and the
//! drift of rows imported since it was trained.

use std::time::Duration;

use mc_learn_core::evaluate::{self as scores, DEFAULT_TRAIN_FRACTION};
use mc_learn_core::metrics::{DriftConfig, DriftDetector, DriftReport};
use mc_learn_core::worker::{Job, JsonText, Reply};
use mc_learn_core::{Dataset, Evaluation, Scores};

use super::{
    BaselineComparisonView, DriftView, LearnApiError, ModelRegistry, Performance, model_err,
    unexpected,
};

impl ModelRegistry {
    /// Performance of the active version (seed 27.4).
    pub fn performance(&self, name: &str) -> Result<Performance, LearnApiError> {
        let schema = self.schema(name)?;
        let (meta, weights) = self
            .active_version(name)?
            .ok_or_else(|| LearnApiError::NoVersion(name.to_string()))?;
        let data = self
            .dataset(name)?
            .ok_or_else(|| LearnApiError::NoData(name.to_string()))?;
        let (train, test) = data.split_time(DEFAULT_TRAIN_FRACTION);
        if test.is_empty() || train.is_empty() {
            return Err(LearnApiError::NoData(name.to_string()));
        }
        let Reply::Assessed {
            evaluation: Some(evaluation),
            evaluate_nanos,
            ..
        } = self.work(&Job::Assess {
            schema: JsonText::encode(&schema),
            weights,
            evaluate: Some(test.clone()),
            predict: Vec::new(),
        })?
        else {
            return Err(unexpected("assess"));
        };
        let evaluation: Evaluation = evaluation.decode().map_err(model_err)?;
        let elapsed = Duration::from_nanos(evaluate_nanos);
        let comparison = scores::compare(schema.task, &train, &test, evaluation.score());
        let current = comparison.custom_score;
        let baseline = comparison.baseline_score;
        let drift = self.drift(name, &data)?;
        let (accuracy, precision, recall, f1) = match evaluation.scores {
            Scores::Regression { r2, .. } => (r2, None, None, None),
            Scores::Classification {
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

    /// Drift of the rows imported since the active version was trained.
    pub(super) fn drift(
        &self,
        name: &str,
        data: &Dataset,
    ) -> Result<Option<DriftReport>, LearnApiError> {
        let Some((meta, weights)) = self.active_version(name)? else {
            return Ok(None);
        };
        let cut = meta.rows_at_training.min(data.len());
        if cut == 0 || cut == data.len() {
            return Ok(None);
        }
        let reference = data.slice(0..cut);
        let incoming = data.slice(cut..data.len());
        let Reply::Assessed { predictions, .. } = self.work(&Job::Assess {
            schema: JsonText::encode(&self.schema(name)?),
            weights,
            evaluate: None,
            predict: vec![reference.clone(), incoming.clone()],
        })?
        else {
            return Err(unexpected("assess"));
        };
        let [reference_p, incoming_p] = <[Vec<f32>; 2]>::try_from(predictions)
            .map_err(|_| model_err("the worker answered the wrong number of predictions"))?;
        let residuals = |d: &Dataset, p: &[f32]| -> Vec<f32> {
            p.iter().zip(&d.y).map(|(p, y)| y - p).collect()
        };
        let (reference_r, incoming_r) = (
            residuals(&reference, &reference_p),
            residuals(&incoming, &incoming_p),
        );
        // Calendar columns always look shifted over a short window.
        let config = DriftConfig {
            ignored_features: vec!["hour_of_day".into(), "day_of_week".into()],
            ..DriftConfig::default()
        };
        let detector = match DriftDetector::fit_with(config, &reference, &reference_r) {
            Ok(d) => d,
            Err(error) => {
                tracing::debug!(model = name, %error, "no drift check");
                return Ok(None);
            }
        };
        match detector.check(&incoming, &incoming_r) {
            Ok(report) => Ok(Some(report)),
            Err(error) => {
                tracing::debug!(model = name, %error, "no drift check");
                Ok(None)
            }
        }
    }
}
