use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use super::*;
use crate::dataset::Dataset;
use crate::schema::builtin_named;
use crate::synth::{self, OrgProfile};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn regression_scores_known_values() {
    let y = [1.0, 2.0, 3.0, 4.0];
    let pred = [1.0, 2.0, 3.0, 5.0];
    assert!(close(r2(&y, &pred).unwrap(), 0.8));
    assert!(close(mae(&y, &pred).unwrap(), 0.25));
    assert!(close(rmse(&y, &pred).unwrap(), 0.5));
    assert!(close(r2(&y, &[2.5; 4]).unwrap(), 0.0));
    assert!(close(r2(&[3.0; 3], &[3.0; 3]).unwrap(), 1.0));
    assert!(close(r2(&[3.0; 3], &[2.0; 3]).unwrap(), 0.0));
}

#[test]
fn bad_inputs_are_errors_not_nan() {
    assert_eq!(
        r2(&[1.0, 2.0], &[1.0]),
        Err(MetricError::LengthMismatch {
            targets: 2,
            predictions: 1
        })
    );
    assert_eq!(mae(&[], &[]), Err(MetricError::Empty));
    assert_eq!(
        rmse(&[1.0, 2.0], &[1.0, f32::NAN]),
        Err(MetricError::NonFinite { index: 1 })
    );
    assert_eq!(mean_baseline(&[], 3), Err(MetricError::Empty));
    assert_eq!(last_value_baseline(&[], &[1.0]), Err(MetricError::Empty));
}

#[test]
fn classification_known_values() {
    let labels = [1.0, 1.0, 0.0, 0.0, 1.0];
    let probs = [0.9, 0.4, 0.6, 0.1, 0.5];
    let c = Classification::from_probabilities(&labels, &probs).unwrap();
    assert!(close(c.accuracy, 0.6));
    assert!(close(c.precision, 2.0 / 3.0));
    assert!(close(c.recall, 2.0 / 3.0));
    assert!(close(c.f1, 2.0 / 3.0));
    // Nothing predicted positive and no positives: no NaN anywhere.
    let none = Classification::from_probabilities(&[0.0, 0.0], &[0.1, 0.2]).unwrap();
    assert_eq!(
        none,
        Classification {
            accuracy: 1.0,
            precision: 0.0,
            recall: 0.0,
            f1: 0.0
        }
    );
}

#[test]
fn baselines_predict_from_the_past() {
    assert_eq!(mean_baseline(&[1.0, 2.0, 6.0], 2).unwrap(), vec![3.0, 3.0]);
    assert_eq!(
        last_value_baseline(&[1.0, 2.0], &[5.0, 6.0, 7.0]).unwrap(),
        vec![2.0, 5.0, 6.0]
    );
    assert!(last_value_baseline(&[1.0], &[]).unwrap().is_empty());
    let test_y = [10.0, 12.0, 14.0];
    let cmp = BaselineComparison::mae("mean", &test_y, &[12.0; 3], &[10.0, 12.0, 13.0]).unwrap();
    assert_eq!(cmp.baseline_name, "mean");
    assert!(close(cmp.baseline_score, 4.0 / 3.0));
    assert!(close(cmp.custom_score, 1.0 / 3.0));
    assert!(close(cmp.improvement_percent, 75.0));
    let worse = BaselineComparison::higher_is_better("mean", 0.8, 0.6);
    assert!(close(worse.improvement_percent, -25.0));
    assert_eq!(
        BaselineComparison::higher_is_better("mean", 0.0, 0.5).improvement_percent,
        0.0
    );
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, shift: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random::<f32>() + shift).collect()
}

#[test]
fn psi_is_small_for_the_same_distribution_and_large_for_a_shift() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let reference = uniform(&mut rng, 5000, 0.0);
    let same = uniform(&mut rng, 5000, 0.0);
    let shifted = uniform(&mut rng, 5000, 0.5);
    let stable = psi(&reference, &same, DEFAULT_BINS);
    let moved = psi(&reference, &shifted, DEFAULT_BINS);
    assert!(stable < 0.02, "{stable}");
    assert!(moved > 1.0, "{moved}");
    assert!(close(psi(&reference, &reference, DEFAULT_BINS), 0.0));
    // Degenerate inputs stay finite.
    assert_eq!(psi(&[], &same, 10), 0.0);
    assert_eq!(psi(&reference, &[f32::NAN], 10), 0.0);
    assert!(close(psi(&[1.0; 50], &[1.0; 20], 0), 0.0));
    let all_above = psi(&[1.0; 50], &[2.0; 20], 10);
    assert!(all_above.is_finite() && all_above > 5.0, "{all_above}");
}

fn org() -> OrgProfile {
    OrgProfile {
        name: "ops".into(),
        rows: 24 * 7 * 12,
        load_scale: 120.0,
        headroom: 1.5,
        mcp_autoscale: 0.2,
        work_seconds: 0.6,
        memory_baseline: 40.0,
        incident_rate: 6.0,
        growth_per_year: 0.1,
    }
}

/// Latency data of `profile`.
fn sample(profile: &OrgProfile, seed: u64) -> Dataset {
    let schema = builtin_named("latency").unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    synth::generate(profile, &mut rng)
        .unwrap()
        .select(&schema)
        .unwrap()
}

/// Residuals of the best possible latency model.
fn residuals(data: &Dataset) -> Vec<f32> {
    (0..data.len())
        .map(|i| {
            let row = data.row(i).try_into().unwrap();
            data.y[i] - synth::expected_latency_ms(row) as f32
        })
        .collect()
}

#[test]
fn drift_is_detected_when_load_triples_but_not_on_a_fresh_sample() {
    let reference = sample(&org(), 1);
    let detector = DriftDetector::fit(&reference, &residuals(&reference)).unwrap();

    let fresh = sample(&org(), 2);
    let report = detector.check(&fresh, &residuals(&fresh)).unwrap();
    assert!(!report.detected, "{report:#?}");
    assert!(report.score < 0.1, "{report:#?}");
    assert_eq!(report.per_feature.len(), 7);

    let mut busier = org();
    busier.load_scale *= 3.0;
    let shifted = sample(&busier, 3);
    let report = detector.check(&shifted, &residuals(&shifted)).unwrap();
    assert!(report.detected);
    assert!(report.score > 1.0, "{report:#?}");
    assert!(
        report
            .reasons
            .iter()
            .any(|r| r.starts_with("thread_count: PSI")),
        "{:?}",
        report.reasons
    );
}

#[test]
fn residual_shift_and_growth_are_detected() {
    let reference = sample(&org(), 1);
    let base = residuals(&reference);
    let detector = DriftDetector::fit(&reference, &base).unwrap();
    let std = rmse(&base, &vec![0.0; base.len()]).unwrap() as f32;

    let biased: Vec<f32> = base.iter().map(|r| r + std).collect();
    let report = detector.check(&reference, &biased).unwrap();
    assert!(report.detected);
    assert!(report.residual_shift > 0.9, "{report:#?}");
    assert_eq!(report.score, 0.0);

    let noisy: Vec<f32> = base.iter().map(|r| r * 2.0).collect();
    let report = detector.check(&reference, &noisy).unwrap();
    assert!(report.detected);
    assert!((report.residual_ratio - 2.0).abs() < 1e-3, "{report:#?}");

    // Without residuals only features are checked.
    let report = detector.check(&reference, &[]).unwrap();
    assert!(!report.detected);
    assert_eq!((report.residual_shift, report.residual_ratio), (0.0, 1.0));
}

#[test]
fn drift_inputs_are_checked() {
    let reference = sample(&org(), 1);
    assert_eq!(
        DriftDetector::fit(&reference, &[1.0]),
        Err(DriftError::ResidualCount {
            rows: reference.len(),
            residuals: 1
        })
    );
    let detector = DriftDetector::fit(&reference, &[]).unwrap();
    assert!(matches!(
        detector.check(&reference.slice(0..5), &[]),
        Err(DriftError::TooFewRows { rows: 5, min: 30 })
    ));
    let mut other = reference.clone();
    other.features[0] = "minute".into();
    assert!(matches!(
        detector.check(&other, &[]),
        Err(DriftError::Columns { .. })
    ));
    let mut bad = residuals(&reference);
    bad[3] = f32::INFINITY;
    assert_eq!(
        detector.check(&reference, &bad),
        Err(DriftError::NonFiniteResidual { index: 3 })
    );
}

#[test]
fn ignored_features_and_serde() {
    let reference = sample(&org(), 1);
    let config = DriftConfig {
        ignored_features: vec!["hour_of_day".into(), "day_of_week".into()],
        ..DriftConfig::default()
    };
    let detector = DriftDetector::fit_with(config, &reference, &[]).unwrap();
    // One Monday: the calendar columns would differ, but are not checked.
    let day = reference.slice(0..24 * 2);
    let report = detector.check(&day, &[]).unwrap();
    assert_eq!(report.per_feature.len(), 5);
    assert!(
        report
            .per_feature
            .iter()
            .all(|(name, _)| name != "hour_of_day" && name != "day_of_week")
    );

    let bytes = postcard::to_stdvec(&detector).unwrap();
    let back: DriftDetector = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, detector);
    let json = serde_json::to_string(&detector).unwrap();
    assert!(serde_json::from_str::<DriftDetector>(&json).is_ok());
    let report_json = serde_json::to_value(&report).unwrap();
    assert!(report_json["per_feature"][0][1].is_number());
    let config: DriftConfig = serde_json::from_str(r#"{"psi_threshold":0.1}"#).unwrap();
    assert_eq!(config.bins, DEFAULT_BINS);
}
