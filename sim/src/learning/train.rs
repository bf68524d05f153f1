//! The organisations' data, their local work, and the final model's score.
//!
//! [`Org::consortium`] makes one organisation per node from the run's seed.
//! [`Org::run_job`] does what `mc-node`'s learner does for a
//! [`TrainJob`] — the moments vector of round 0, or
//! [`campaign_update`] from the round's base with the pooled normaliser and
//! the job's [`StepPlan`](mc_learn_core::plan::StepPlan) — on the first
//! 80 % of the rows, on the CPU. [`Org::predict`] and [`score`] judge a finished model on the
//! last 20 %.
//!
//! libtorch runs with one intra-op thread ([`single_threaded`]): results must
//! not depend on how many cores the machine has, or the same seed would not
//! give the same report everywhere.

use mc_core::{TrainJob, TrainKind};
use mc_learn::federated::{campaign_update, moments_vector, normaliser_from_moments};
use mc_learn::tch::Device;
use mc_learn::{Model, Scores};
use mc_learn_core::synth;
use mc_learn_core::{Dataset, ModelSchema};
use rand::rngs::ChaCha8Rng;

use super::Config;
use crate::Error;
use crate::queue::{Micros, millis};
use crate::rng::Streams;

/// The share of each organisation's rows (the first ones) it trains on, as
/// in `mc-node`'s learner; the rest is held out.
pub const TRAIN_FRACTION: f64 = 0.8;

/// One organisation: the data of one node.
#[derive(Debug, Clone)]
pub struct Org {
    /// The profile's name (`org-07`).
    pub name: String,
    /// Rows it trains on (the first 80 %).
    pub train: Dataset,
    /// Rows held out (the last 20 %).
    pub test: Dataset,
}

/// Makes libtorch use one thread, so results do not depend on the machine.
pub fn single_threaded() {
    mc_learn::tch::set_num_threads(1);
}

impl Org {
    /// One organisation per node: profiles from
    /// [`synth::consortium`], rows from [`synth::generate`] (each with its
    /// own stream), at most `rows_cap` of them, the model's columns.
    pub fn consortium(
        config: &Config,
        schema: &ModelSchema,
        nodes: usize,
        streams: &Streams,
    ) -> Result<Vec<Org>, Error> {
        let profiles = synth::consortium(nodes, &mut streams.stream("learning/consortium"));
        profiles
            .into_iter()
            .enumerate()
            .map(|(i, mut profile)| {
                if let Some(cap) = config.rows_cap {
                    profile.rows = profile.rows.min(cap);
                }
                let mut rng: ChaCha8Rng = streams.stream(&format!("learning/data/{i}"));
                let table = synth::generate(&profile, &mut rng).map_err(|e| {
                    Error::Invalid(format!("cannot generate {}: {e}", profile.name))
                })?;
                let data = table
                    .select(schema)
                    .map_err(|e| Error::Invalid(format!("{} lacks a column: {e}", profile.name)))?;
                let (train, test) = data.split_time(TRAIN_FRACTION);
                Ok(Org {
                    name: profile.name,
                    train,
                    test,
                })
            })
            .collect()
    }

    /// The job's result, as `mc-node`'s learner computes it: the weights (or
    /// moments) and the number of rows.
    pub fn run_job(&self, job: &TrainJob) -> Result<(Vec<f32>, u64), String> {
        if self.train.is_empty() {
            return Err(format!("too few rows for model {:?}", job.model.name));
        }
        match &job.kind {
            TrainKind::Moments => Ok((
                moments_vector(&job.model, &self.train),
                self.train.len() as u64,
            )),
            TrainKind::Update {
                base,
                moments,
                plan,
                correction,
                seed,
            } => campaign_update(
                &job.model,
                moments,
                base,
                &self.train,
                plan,
                correction.as_deref(),
                *seed,
                Device::Cpu,
            ),
        }
    }

    /// How long the job takes on a node `slowness` times slower than the
    /// fastest: `compute_ms` plus `compute_us_per_row_epoch` per row
    /// processed. The moments are one pass over the training rows; a model
    /// round processes `steps × batch_size` rows of its plan, the same on
    /// every participant whatever its row count (a member with fewer rows
    /// than one batch processes fewer; that is not modelled).
    pub fn compute_time(&self, job: &TrainJob, config: &Config, slowness: f64) -> Micros {
        let rows = match &job.kind {
            TrainKind::Moments => self.train.len() as f64,
            TrainKind::Update { plan, .. } => f64::from(plan.steps) * f64::from(plan.batch_size),
        };
        millis(slowness * (config.compute_ms + rows * config.compute_us_per_row_epoch / 1e3))
    }

    /// A finished model's predictions (its pooled `moments` and `weights`)
    /// for the held-out rows, in target units (probabilities for
    /// classification).
    pub fn predict(
        &self,
        schema: &ModelSchema,
        moments: &[f32],
        weights: &[f32],
    ) -> Result<Vec<f32>, String> {
        let normaliser = normaliser_from_moments(schema, moments)?;
        let model = Model::from_flat(schema, normaliser, weights, Device::Cpu)
            .map_err(|e| e.to_string())?;
        model.predict(&self.test).map_err(|e| e.to_string())
    }
}

/// The score of `predictions` against `targets`: R² for regression, F1 for
/// classification.
pub fn score(schema: &ModelSchema, predictions: &[f32], targets: &[f32]) -> f64 {
    Scores::of(schema.task, predictions, targets).score()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mc_core::learning::{DEFAULT_CAMPAIGN_BATCH, DEFAULT_CAMPAIGN_LR};
    use mc_learn_core::CampaignId;
    use mc_learn_core::plan::LocalTraining;

    use super::*;

    fn config() -> Config {
        toml::from_str(
            "model = \"latency\"\nrounds = 2\nround_deadline_s = 20\nstart_at_s = 5\nrows_cap = 300\n",
        )
        .unwrap()
    }

    #[test]
    fn organisations_are_a_function_of_the_seed_and_hold_out_their_last_rows() {
        let c = config();
        let schema = c.schema().unwrap();
        let orgs = Org::consortium(&c, &schema, 4, &Streams::new(3)).unwrap();
        let again = Org::consortium(&c, &schema, 4, &Streams::new(3)).unwrap();
        assert_eq!(orgs.len(), 4);
        for (a, b) in orgs.iter().zip(&again) {
            assert_eq!((&a.train.x, &a.test.y), (&b.train.x, &b.test.y));
            assert_eq!(a.train.len() + a.test.len(), 300);
            assert_eq!(a.test.len(), 60);
        }
        assert_ne!(orgs[0].train.y, orgs[1].train.y);
    }

    #[test]
    fn local_work_is_deterministic_and_takes_simulated_time() {
        single_threaded();
        let c = config();
        let schema = c.schema().unwrap();
        let org = &Org::consortium(&c, &schema, 1, &Streams::new(1)).unwrap()[0];
        let job = |kind| TrainJob {
            campaign: CampaignId::from_name("t"),
            round: 1,
            model: schema.clone(),
            kind,
        };
        let (moments, rows) = org.run_job(&job(TrainKind::Moments)).unwrap();
        assert_eq!(rows, 240);
        let base: Arc<[f32]> = Arc::from(mc_learn_core::init::init_weights(
            &schema,
            7,
            mc_learn_core::init::Init::HeUniform,
        ));
        // 2 epochs of a median member with 240 rows: 2 · ⌈240 / 64⌉ steps.
        let plan = LocalTraining {
            local_epochs: 2,
            batch_size: DEFAULT_CAMPAIGN_BATCH,
            learning_rate: DEFAULT_CAMPAIGN_LR,
            rounds: c.rounds,
            final_rate_fraction: mc_learn_core::plan::FINAL_RATE_FRACTION,
        }
        .plan(240, 1);
        assert_eq!(plan.steps, 8);
        let update = job(TrainKind::Update {
            base: base.clone(),
            moments: Arc::from(moments.clone()),
            plan,
            correction: None,
            seed: 9,
        });
        let (w, n) = org.run_job(&update).unwrap();
        assert_eq!((w.len(), n), (schema.num_params(), 240));
        assert_eq!(org.run_job(&update).unwrap().0, w, "same job, same bits");
        assert_ne!(&w[..], &base[..]);
        // 200 ms + 8 steps × 64 rows × 20 µs, twice as slow.
        assert_eq!(org.compute_time(&update, &c, 2.0), 2 * 210_240);
        // The moments: one pass over the 240 rows.
        assert_eq!(org.compute_time(&job(TrainKind::Moments), &c, 1.0), 204_800);
        let predictions = org.predict(&schema, &moments, &w).unwrap();
        assert_eq!(predictions.len(), 60);
        assert!(score(&schema, &predictions, &org.test.y).is_finite());
    }
}
