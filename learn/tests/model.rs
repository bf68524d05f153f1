//! The model on its own: flat weights, determinism, learning.

mod common;

use common::{disc, quick, schema, table, wave};
use mc_learn::{Model, ModelError, Normaliser, Scores, Task};
use rand::{SeedableRng, rngs::ChaCha8Rng};

fn fresh(task: Task, seed: u64) -> (Model, mc_learn::Dataset) {
    let s = schema(task, vec![16, 8]);
    let data = table(
        600,
        seed,
        if task == Task::Regression { wave } else { disc },
    );
    let n = Normaliser::fit(&s, &data).unwrap();
    let m = Model::init(&s, n, &mut ChaCha8Rng::seed_from_u64(seed), quick(1).device).unwrap();
    (m, data)
}

#[test]
fn flat_weights_round_trip_exactly_in_a_fixed_order() {
    let (model, _) = fresh(Task::Regression, 1);
    let flat = model.flat_weights();
    assert_eq!(flat.len(), model.schema().num_params());
    // Biases start at zero; layer 0's weight is first, then its bias.
    assert!(flat[..32].iter().all(|&w| w != 0.0));
    assert!(flat[32..48].iter().all(|&b| b == 0.0));
    let names: Vec<String> = model
        .mlp()
        .named_params()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "layers.0.weight",
            "layers.0.bias",
            "layers.1.weight",
            "layers.1.bias",
            "layers.2.weight",
            "layers.2.bias"
        ]
    );

    let changed: Vec<f32> = flat
        .iter()
        .enumerate()
        .map(|(i, &w)| w + i as f32 * 1e-3)
        .collect();
    let mut other = Model::from_flat(
        model.schema(),
        model.normaliser().clone(),
        &flat,
        model.device(),
    )
    .unwrap();
    other.set_flat_weights(&changed).unwrap();
    let back = other.flat_weights();
    assert_eq!(
        back.iter().map(|w| w.to_bits()).collect::<Vec<_>>(),
        changed.iter().map(|w| w.to_bits()).collect::<Vec<_>>()
    );
}

#[test]
fn wrong_length_or_non_finite_weights_are_errors_not_panics() {
    let (mut model, _) = fresh(Task::Regression, 1);
    let n = model.num_params();
    let before = model.flat_weights();
    match model.set_flat_weights(&vec![0.0; n - 1]) {
        Err(ModelError::WrongLength { expected, got }) => assert_eq!((expected, got), (n, n - 1)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        model.set_flat_weights(&vec![0.0; n + 1]),
        Err(ModelError::WrongLength { .. })
    ));
    assert!(matches!(
        model.set_flat_weights(&[]),
        Err(ModelError::WrongLength { .. })
    ));
    let mut nan = before.clone();
    nan[3] = f32::NAN;
    assert!(matches!(
        model.set_flat_weights(&nan),
        Err(ModelError::NonFiniteWeight { index: 3 })
    ));
    assert_eq!(
        model.flat_weights(),
        before,
        "a refused vector changes nothing"
    );
}

#[test]
fn same_seed_gives_bit_identical_weights_after_training() {
    let run = || {
        let (mut model, data) = fresh(Task::Regression, 3);
        model.train(&data, &quick(3)).unwrap();
        model
            .flat_weights()
            .into_iter()
            .map(f32::to_bits)
            .collect::<Vec<_>>()
    };
    let first = run();
    assert_eq!(first, run());
    let (mut other, data) = fresh(Task::Regression, 3);
    other
        .train(
            &data,
            &mc_learn::TrainConfig {
                seed: 8,
                ..quick(3)
            },
        )
        .unwrap();
    let other: Vec<u32> = other.flat_weights().into_iter().map(f32::to_bits).collect();
    assert_ne!(first, other, "another shuffling seed trains differently");
}

#[test]
fn regression_learns_a_nonlinear_function() {
    let s = schema(Task::Regression, vec![32, 16]);
    let train = table(1500, 10, wave);
    let test = table(300, 11, wave);
    let n = Normaliser::fit(&s, &train).unwrap();
    let mut model = Model::init(&s, n, &mut ChaCha8Rng::seed_from_u64(1), quick(1).device).unwrap();
    let report = model.train(&train, &quick(40)).unwrap();
    assert_eq!(report.samples, 1500);
    let eval = model.evaluate(&test).unwrap();
    let Scores::Regression { r2, mae } = eval.scores else {
        panic!("{eval:?}")
    };
    assert!(r2 > 0.9, "R² {r2}, MAE {mae}");
    assert_eq!(eval.rows, 300);
    // Predictions are in target units, not standardised ones.
    let p = model.predict(&test).unwrap();
    assert!((p[0] - test.y[0]).abs() < 0.5, "{} vs {}", p[0], test.y[0]);
}

#[test]
fn classifier_separates_a_disc() {
    let s = schema(Task::BinaryClassification, vec![32, 16]);
    let train = table(1500, 20, disc);
    let test = table(300, 21, disc);
    let n = Normaliser::fit(&s, &train).unwrap();
    let mut model = Model::init(&s, n, &mut ChaCha8Rng::seed_from_u64(2), quick(1).device).unwrap();
    model.train(&train, &quick(40)).unwrap();
    let eval = model.evaluate(&test).unwrap();
    let Scores::Classification { f1, accuracy, .. } = eval.scores else {
        panic!("{eval:?}")
    };
    assert!(f1 > 0.8, "F1 {f1}, accuracy {accuracy}");
    let p = model.predict(&test).unwrap();
    assert!(p.iter().all(|&v| (0.0..=1.0).contains(&v)), "probabilities");
}

#[test]
fn tables_with_other_columns_or_bad_targets_are_refused() {
    let (mut model, mut data) = fresh(Task::BinaryClassification, 4);
    let mut renamed = data.clone();
    renamed.features[1] = "c".into();
    assert!(matches!(
        model.train(&renamed, &quick(1)),
        Err(ModelError::Columns { .. })
    ));
    assert!(matches!(
        model.predict(&renamed),
        Err(ModelError::Columns { .. })
    ));
    data.y[5] = 0.5;
    assert!(matches!(
        model.train(&data, &quick(1)),
        Err(ModelError::NotBinary { row: 5, .. })
    ));
    data.y[5] = 1.0;
    data.x[2] = f32::INFINITY;
    assert!(matches!(
        model.train(&data, &quick(1)),
        Err(ModelError::NonFiniteData { row: 1 })
    ));
}
