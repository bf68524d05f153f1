//! The two models federation is compared with: each organisation alone, and
//! everyone's rows pooled in one place.

use mc_learn_core::{Dataset, ModelSchema};
use rand::{SeedableRng, rngs::ChaCha8Rng};
use serde::Serialize;

use super::{BenchError, data::Org};
use crate::{Model, Normaliser, Scores, TrainConfig, custom, transfer};

/// R² and MAE of one model on one organisation's test rows.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Score {
    /// Coefficient of determination.
    pub r2: f64,
    /// Mean absolute error, in target units (ms for `latency`).
    pub mae: f64,
}

impl Score {
    /// The regression scores of `scores` (a classifier's F1 as `r2`, its
    /// error rate as `mae`, should the benchmark run one).
    pub fn of(scores: Scores) -> Self {
        match scores {
            Scores::Regression { r2, mae } => Self { r2, mae },
            Scores::Classification { accuracy, f1, .. } => Self {
                r2: f1,
                mae: 1.0 - accuracy,
            },
        }
    }
}

/// Local-only: every organisation trains its own model the way custom
/// training does (its own normaliser fitted on its training rows, `cfg`,
/// the same time split) but with no floor on the number of rows, and is
/// scored on its own test rows.
pub fn local_only(
    schema: &ModelSchema,
    orgs: &[Org],
    cfg: &TrainConfig,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Score>, BenchError> {
    orgs.iter()
        .map(|org| {
            let (data, train_fraction) = org.whole();
            let report = custom::train(
                schema,
                &data,
                &custom::Options {
                    train: *cfg,
                    min_rows: 0,
                    train_fraction,
                    ..custom::Options::default()
                },
            )?;
            debug_assert_eq!(report.test_rows, org.test.len());
            let score = Score::of(report.evaluation.scores);
            progress(&format!(
                "  {}: {} training rows, R² {:.3}, MAE {:.2}",
                org.name, report.train_rows, score.r2, score.mae
            ));
            Ok(score)
        })
        .collect()
}

/// Personalised: every organisation fine-tunes `federated`'s last
/// `layers` layers on its own training rows with `opts`
/// ([`transfer::fine_tune`], what `mc-node learn transfer` runs; the
/// split is each organisation's own), and is scored on its own test rows.
pub fn personalised(
    federated: &Model,
    orgs: &[Org],
    layers: usize,
    opts: &transfer::Options,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Score>, BenchError> {
    orgs.iter()
        .map(|org| {
            let (data, train_fraction) = org.whole();
            let report = transfer::fine_tune(
                federated,
                &data,
                layers,
                &transfer::Options {
                    train_fraction,
                    ..*opts
                },
            )?;
            debug_assert_eq!(report.train_rows, org.train.len());
            let (score, base) = (
                Score::of(report.fine_tuned.scores),
                Score::of(report.base.scores),
            );
            progress(&format!(
                "  {}: R² {:.3}, MAE {:.2} (the federated model as it is: R² {:.3}, MAE {:.2})",
                org.name, score.r2, score.mae, base.r2, base.mae
            ));
            Ok(score)
        })
        .collect()
}

/// Central: one model on every organisation's training rows pooled (one
/// normaliser fitted on them), scored on each organisation's test rows.
pub fn central(
    schema: &ModelSchema,
    orgs: &[Org],
    cfg: &TrainConfig,
) -> Result<Vec<Score>, BenchError> {
    let mut pooled = Dataset::empty(schema.features.clone(), schema.target.clone());
    for org in orgs {
        pooled.extend(&org.train);
    }
    let normaliser = Normaliser::fit(schema, &pooled)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut model = Model::init(schema, normaliser, &mut rng, cfg.device)?;
    model.train_with_rng(&pooled, cfg, &mut rng)?;
    score_all(&model, orgs)
}

/// `model` on every organisation's test rows.
pub fn score_all(model: &Model, orgs: &[Org]) -> Result<Vec<Score>, BenchError> {
    orgs.iter()
        .map(|org| Ok(Score::of(model.evaluate(&org.test)?.scores)))
        .collect()
}
