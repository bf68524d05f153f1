//! Custom training, transfer learning and the federated local update.

mod common;

use common::{quick, schema, table, wave};
use mc_learn::custom::{self, Baseline, CustomError};
use mc_learn::transfer::{self, TransferError};
use mc_learn::{Model, Normaliser, Task, TrainConfig, federated};
use mc_learn_core::plan::StepPlan;
use rand::{SeedableRng, rngs::ChaCha8Rng};

fn custom_opts(epochs: usize) -> custom::Options {
    custom::Options {
        train: quick(epochs),
        ..custom::Options::default()
    }
}

#[test]
fn custom_training_refuses_fewer_than_1000_rows() {
    let s = schema(Task::Regression, vec![8]);
    let err = custom::train(&s, &table(999, 1, wave), &custom_opts(1)).unwrap_err();
    assert!(
        matches!(
            err,
            CustomError::TooFewRows {
                rows: 999,
                min: 1000
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "999 rows; custom training needs at least 1000"
    );
    // A federated participant may be held to a lower minimum.
    let opts = custom::Options {
        min_rows: 100,
        ..custom_opts(1)
    };
    assert!(custom::train(&s, &table(200, 1, wave), &opts).is_ok());
}

#[test]
fn custom_training_activates_a_good_model_and_beats_the_baselines() {
    let s = schema(Task::Regression, vec![32, 16]);
    let report = custom::train(&s, &table(1500, 2, wave), &custom_opts(40)).unwrap();
    assert_eq!((report.train_rows, report.test_rows), (1200, 300));
    assert!(report.activated, "score {}", report.score);
    assert!(report.score > 0.9);
    let cmp = report.baseline_vs_custom;
    // Rows are independent draws: the mean beats the last value.
    assert_eq!(cmp.better, Baseline::Mean);
    assert!(cmp.baseline_score < 0.05 && cmp.margin > 0.85, "{cmp:?}");
}

#[test]
fn custom_training_below_the_floor_is_not_activated() {
    let s = schema(Task::Regression, vec![8]);
    // A target unrelated to the features: nothing to learn.
    let mut data = table(1000, 3, |_, _| 0.0);
    let noise = table(1000, 4, |a, _| a);
    data.y = noise.y;
    let report = custom::train(&s, &data, &custom_opts(3)).unwrap();
    assert!(!report.activated);
    assert!(report.score < 0.7, "score {}", report.score);
    assert_eq!(report.activation_floor, 0.7);
    // A lower floor is the caller's choice.
    let lenient = custom::Options {
        activation_floor: -10.0,
        ..custom_opts(3)
    };
    assert!(custom::train(&s, &data, &lenient).unwrap().activated);
}

#[test]
fn fine_tuning_changes_only_the_last_layers_and_adapts() {
    let s = schema(Task::Regression, vec![16, 16]);
    let home = table(1000, 5, wave);
    let mut base = Model::init(
        &s,
        Normaliser::fit(&s, &home).unwrap(),
        &mut ChaCha8Rng::seed_from_u64(5),
        quick(1).device,
    )
    .unwrap();
    base.train(&home, &quick(20)).unwrap();

    // Elsewhere the same shape is shifted and scaled.
    let away = table(1000, 6, |a, b| 1.5 * wave(a, b) + 3.0);
    let opts = transfer::Options {
        train: quick(20),
        fine_tune_epochs: 20,
        ..transfer::Options::default()
    };
    let report = transfer::fine_tune(&base, &away, 1, &opts).unwrap();
    assert_eq!((report.frozen_layers, report.trained_layers), (2, 1));

    // Layers 0 and 1 (2·16+16 + 16·16+16 values) are untouched; layer 2 moved.
    let frozen = 2 * 16 + 16 + 16 * 16 + 16;
    let (before, after) = (base.flat_weights(), report.model.flat_weights());
    assert_eq!(before[..frozen], after[..frozen]);
    assert_ne!(before[frozen..], after[frozen..]);

    assert!(
        report.fine_tuned.score() > report.base.score(),
        "{report:?}"
    );
    assert!(report.improvement_over_base_pct.is_some_and(|p| p > 0.0));
    assert!(report.improvement_over_scratch_pct.is_some());
    assert!(
        report.scratch.score() > 0.5,
        "from scratch learns too: {report:?}"
    );

    assert!(matches!(
        transfer::fine_tune(&base, &away, 0, &opts),
        Err(TransferError::BadLayerCount { k: 0, layers: 3 })
    ));
    assert!(matches!(
        transfer::fine_tune(&base, &away, 4, &opts),
        Err(TransferError::BadLayerCount { k: 4, layers: 3 })
    ));
}

#[test]
fn local_update_trains_from_the_global_weights() {
    let s = schema(Task::Regression, vec![8]);
    let data = table(300, 7, wave);
    let normaliser = Normaliser::fit(&s, &data).unwrap();
    let global = Model::init(
        &s,
        normaliser.clone(),
        &mut ChaCha8Rng::seed_from_u64(7),
        quick(1).device,
    )
    .unwrap()
    .flat_weights();
    let device = quick(1).device;
    let plan = |steps| StepPlan {
        steps,
        batch_size: 64,
        learning_rate: 1e-3,
    };
    let run = |steps, seed| {
        federated::local_update(
            &s,
            &normaliser,
            &global,
            &data,
            &plan(steps),
            None,
            seed,
            device,
        )
    };
    let (weights, samples) = run(7, 99).unwrap();
    assert_eq!(samples, 300);
    assert_eq!(weights.len(), s.num_params());
    assert_ne!(weights, global);
    assert_eq!(weights, run(7, 99).unwrap().0, "deterministic on the CPU");
    // 7 steps over 300 rows are one epoch of 5 batches and two more: not
    // the same as 5 or 10 steps (two whole epochs).
    assert_ne!(weights, run(5, 99).unwrap().0);
    assert_ne!(weights, run(10, 99).unwrap().0);
    assert_ne!(
        weights,
        run(7, 98).unwrap().0,
        "the seed orders the batches"
    );
    // Two whole epochs of steps are two epochs of training.
    let mut two_epochs = Model::from_flat(&s, normaliser.clone(), &global, device).unwrap();
    two_epochs
        .train(
            &data,
            &TrainConfig {
                epochs: 2,
                batch_size: 64,
                learning_rate: 1e-3,
                // Plain FedAvg's local steps carry no L2 decay; neither
                // do the campaign's (the stand-alone trainer's does).
                weight_decay: 0.0,
                seed: 99,
                device,
            },
        )
        .unwrap();
    assert_eq!(run(10, 99).unwrap().0, two_epochs.flat_weights());
    assert!(
        federated::local_update(
            &s,
            &normaliser,
            &global[1..],
            &data,
            &plan(1),
            None,
            1,
            device
        )
        .is_err()
    );

    // A drift correction is added after every step: after one step the
    // weights are the uncorrected step's plus the correction, exactly.
    let correction: Vec<f32> = (0..global.len()).map(|k| k as f32 * 1e-4).collect();
    let corrected = |correction: &[f32]| {
        federated::local_update(
            &s,
            &normaliser,
            &global,
            &data,
            &plan(1),
            Some(correction),
            99,
            device,
        )
    };
    let plain = run(1, 99).unwrap().0;
    let expected: Vec<f32> = plain.iter().zip(&correction).map(|(w, c)| w + c).collect();
    assert_eq!(corrected(&correction).unwrap().0, expected);
    assert!(
        corrected(&correction[1..]).is_err(),
        "a correction of the wrong length is refused"
    );
}
