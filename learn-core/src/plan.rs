//! What every participant of a campaign does locally in a model round, and
//! how round 0's moments are pooled — the parts of the algorithm that every
//! node must compute identically, kept here (no torch) so that the node, the
//! simulator and the benchmark share them.
//!
//! # Local work is counted in steps, not epochs
//!
//! If every participant ran `E` epochs, an organisation with `n` rows would
//! take `E·n/B` optimiser steps and FedAvg would then weight its update by
//! `n` again: large members dominate quadratically, and the average drifts
//! towards a minimiser of the wrong objective (the "objective
//! inconsistency" of FedAvg with heterogeneous local work, Wang et al.,
//! NeurIPS 2020). Instead every participant runs the same number of steps,
//! `E · ⌈ñ / B⌉` with `ñ` the median of the sample counts accepted in the
//! moments round: `E` epochs of a typical member. Small members then pass
//! over their rows more often, large ones less; FedAvg weighted by sample
//! count is then a consistent estimate of training on the pooled rows. The
//! median cannot be moved far by a few participants lying about their
//! counts.
//!
//! # A decaying learning rate
//!
//! With a constant rate, the global model keeps moving by about
//! `rate × steps` every round even at the optimum (every participant's
//! local optimum differs). The rate decays on a cosine from the campaign's
//! rate in round 1 to [`DEFAULT_FINAL_RATE_FRACTION`] of it in the last
//! round (a campaign setting). Too steep a decay under-trains a small data
//! set in few rounds; none leaves the global model of a large one
//! wandering (figures at [`DEFAULT_FINAL_RATE_FRACTION`]).
//!
//! # Pooled moments under robust rules
//!
//! FedAvg of every member's per-column means and mean squares gives the
//! pooled moments exactly. A robust rule cannot be applied to the two
//! separately: the median of the means squared, taken from the median of
//! the mean squares, leaves out the spread *between* members and can even
//! come out negative. [`pool_moments`] takes the coordinate-wise median of
//! the means as the centre `c`, then the median over members of their mean
//! squared deviation from `c` (`var_i + (mean_i − c)²`) as the variance.

use crate::aggregate::{self, AggregateError, Rule};

/// A campaign's batch size when its declaration names none.
pub const DEFAULT_BATCH_SIZE: u32 = 64;

/// A campaign's round-1 learning rate when its declaration names none, for
/// the participants' Adam on standardised data
/// (`mc_learn::federated::LOCAL_OPTIMISER`). On `mc-learn bench federated`
/// (seed 1, FedAvg with drift correction at `scaffold::STRENGTH` 0.5, 60
/// rounds, the built-in models' log-scale features), mean held-out R²
/// (MAE) by local epochs and rate: 4 at 0.002, the previous defaults,
/// 0.936 (13.5); 8 at 0.002, 0.954 (11.8); **16 at 0.001, 0.973 (8.9)**;
/// 16 at 0.002, 0.949; 16 at 0.0005, 0.958; 32 at 0.0005, 0.970 (9.0).
/// With drift correction smoothed, more local work per round pays: the
/// federated model moves about as far per round as central training does
/// in that many steps, and 60 rounds of 4 epochs were far short of
/// central's 40 epochs.
pub const DEFAULT_LEARNING_RATE: f64 = 0.001;
/// Local epochs per round (of a member with the median sample count) when a
/// command line names none; see [`DEFAULT_LEARNING_RATE`].
pub const DEFAULT_LOCAL_EPOCHS: u32 = 16;

/// The learning rate of the last round, as a fraction of the first's, of a
/// campaign declared before the fraction was a setting.
pub const FINAL_RATE_FRACTION: f64 = 0.1;

/// The learning rate of the last round, as a fraction of the first's, when
/// a campaign names none. Chosen from `scripts/fl-compare` (`auto_mpg`,
/// seeds 7–9) and `mc-learn bench federated` (seed 1) together, campaigns
/// starting from [`crate::init::Init::Torch`] (docs/benchmarks.md): the
/// campaign minus plain FedAvg on `auto_mpg` (5 / 10 organisations) and the
/// synthetic global model's mean R² / MAE were, by fraction,
/// 0.1: −0.009 / −0.028 and 0.981 / 6.48; 0.3: −0.004 / −0.014 and
/// 0.984 / 6.12; **0.5: −0.003 / −0.006 and 0.982 / 6.30**; 1 (constant):
/// +0.004 / +0.007 and 0.976 / 6.77 with one organisation under R² 0.85
/// (on an AMD EPYC VM; the synthetic figures differ on other CPUs by up to
/// 0.014 R², see docs/benchmarks.md). On seeds 10–12 the campaign then
/// scored at or above plain FedAvg on all five harness data sets.
pub const DEFAULT_FINAL_RATE_FRACTION: f64 = 0.5;

/// Most local steps a round may ask for (a bound against absurd settings).
pub const MAX_LOCAL_STEPS: u64 = 100_000;

/// Local training settings of a campaign.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalTraining {
    /// Epochs of a member with the median sample count.
    pub local_epochs: u32,
    /// Rows per optimiser step.
    pub batch_size: u32,
    /// Learning rate of round 1.
    pub learning_rate: f64,
    /// Model rounds in the campaign.
    pub rounds: u32,
    /// The last round's learning rate as a fraction of round 1's (1 for a
    /// constant rate).
    pub final_rate_fraction: f64,
}

/// One participant's work in one model round.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepPlan {
    /// Optimiser steps (minibatches, cycling over reshuffled epochs).
    pub steps: u32,
    /// Rows per step.
    pub batch_size: u32,
    /// Learning rate of this round.
    pub learning_rate: f64,
}

/// The median (the lower one of an even count) of the sample counts, or 0
/// with none.
pub fn reference_count(counts: impl IntoIterator<Item = u64>) -> u64 {
    let mut counts: Vec<u64> = counts.into_iter().collect();
    if counts.is_empty() {
        return 0;
    }
    counts.sort_unstable();
    counts[(counts.len() - 1) / 2]
}

impl LocalTraining {
    /// Local steps of every participant: `local_epochs · ⌈reference / batch⌉`,
    /// at least 1 and at most [`MAX_LOCAL_STEPS`].
    pub fn steps(&self, reference_count: u64) -> u32 {
        let batch = u64::from(self.batch_size.max(1));
        let per_epoch = reference_count.div_ceil(batch).max(1);
        (u64::from(self.local_epochs.max(1)) * per_epoch).min(MAX_LOCAL_STEPS) as u32
    }

    /// The learning rate of model round `round` (1-based): a cosine from
    /// the campaign's rate down to `final_rate_fraction` of it.
    pub fn rate(&self, round: u32) -> f64 {
        let progress = if self.rounds <= 1 {
            0.0
        } else {
            f64::from(round.clamp(1, self.rounds) - 1) / f64::from(self.rounds - 1)
        };
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        let last = self.final_rate_fraction;
        self.learning_rate * (last + (1.0 - last) * cosine)
    }

    /// The plan of model round `round`.
    pub fn plan(&self, reference_count: u64, round: u32) -> StepPlan {
        StepPlan {
            steps: self.steps(reference_count),
            batch_size: self.batch_size.max(1),
            learning_rate: self.rate(round),
        }
    }
}

/// Pools round 0's moments vectors (`[mean × f, mean square × f, target
/// mean, target mean square]` with their sample counts): FedAvg gives the
/// exact pooled moments; any robust rule the robust centre and spread of
/// the module documentation. The result is in the same layout and does not
/// depend on the order of `updates`.
pub fn pool_moments(rule: Rule, updates: &[(u64, &[f32])]) -> Result<Vec<f32>, AggregateError> {
    let first = updates.first().ok_or(AggregateError::NoUpdates)?;
    let width = first.1.len();
    if width < 2 || width % 2 != 0 {
        return Err(AggregateError::ShapeMismatch {
            index: 0,
            expected: width + width % 2,
            actual: width,
        });
    }
    if rule == Rule::FedAvg {
        return aggregate::aggregate(Rule::FedAvg, updates);
    }
    for (index, (_, v)) in updates.iter().enumerate() {
        if v.len() != width {
            return Err(AggregateError::ShapeMismatch {
                index,
                expected: width,
                actual: v.len(),
            });
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(AggregateError::NonFinite { index });
        }
    }
    // Columns: features then the target; mean at `mean_at(j)`, mean square
    // at `square_at(j)`.
    let f = width / 2 - 1;
    let mean_at = |j: usize| if j < f { j } else { 2 * f };
    let square_at = |j: usize| if j < f { f + j } else { 2 * f + 1 };
    let mut out = vec![0.0f32; width];
    let mut column = Vec::with_capacity(updates.len());
    for j in 0..=f {
        column.clear();
        column.extend(updates.iter().map(|(_, v)| f64::from(v[mean_at(j)])));
        let centre = median(&mut column);
        column.clear();
        column.extend(updates.iter().map(|(_, v)| {
            let (mean, square) = (f64::from(v[mean_at(j)]), f64::from(v[square_at(j)]));
            let variance = (square - mean * mean).max(0.0);
            variance + (mean - centre) * (mean - centre)
        }));
        let spread = median(&mut column);
        out[mean_at(j)] = centre as f32;
        out[square_at(j)] = (spread + centre * centre) as f32;
    }
    Ok(out)
}

/// The median of finite values (the mean of the middle two for an even
/// count); sorts `values`.
fn median(values: &mut [f64]) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

/// The moments vector of round 0 for a model of `schema`: per feature the
/// mean, per feature the mean square (of the log-scale features' logs,
/// [`crate::ModelSchema::model_inputs`]), then the target's mean and mean square.
pub fn moments_vector(schema: &crate::ModelSchema, data: &crate::Dataset) -> Vec<f32> {
    let f = data.n_features();
    let n = data.len().max(1) as f64;
    let x = schema.model_inputs(&data.x);
    let mut sums = vec![0.0f64; f + 1];
    let mut squares = vec![0.0f64; f + 1];
    for i in 0..data.len() {
        for (j, &v) in x[i * f..(i + 1) * f]
            .iter()
            .chain(std::iter::once(&data.y[i]))
            .enumerate()
        {
            sums[j] += f64::from(v);
            squares[j] += f64::from(v) * f64::from(v);
        }
    }
    let mut out = Vec::with_capacity(2 * f + 2);
    out.extend(sums[..f].iter().map(|s| (s / n) as f32));
    out.extend(squares[..f].iter().map(|s| (s / n) as f32));
    out.push((sums[f] / n) as f32);
    out.push((squares[f] / n) as f32);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn training(rounds: u32) -> LocalTraining {
        LocalTraining {
            local_epochs: 2,
            batch_size: 64,
            learning_rate: 1e-2,
            rounds,
            final_rate_fraction: FINAL_RATE_FRACTION,
        }
    }

    #[test]
    fn every_participant_runs_the_epochs_of_the_median_member() {
        assert_eq!(reference_count([300, 9000, 2000]), 2000);
        assert_eq!(reference_count([300, 9000, 2000, 100]), 300);
        assert_eq!(reference_count([]), 0);
        let t = training(10);
        assert_eq!(t.steps(2000), 2 * 32);
        assert_eq!(t.steps(0), 2, "at least one step per epoch");
        assert_eq!(t.steps(u64::MAX), MAX_LOCAL_STEPS as u32);
    }

    #[test]
    fn the_rate_decays_from_the_campaigns_to_a_tenth() {
        let t = training(5);
        assert_eq!(t.rate(1), 1e-2);
        assert!((t.rate(5) - 1e-3).abs() < 1e-15);
        assert!(t.rate(2) < t.rate(1) && t.rate(3) < t.rate(2) && t.rate(5) < t.rate(4));
        assert_eq!(training(1).rate(1), 1e-2);
        assert_eq!(t.plan(640, 1).steps, 20);
    }

    /// `[mean, mean square]` of a column with the given mean and variance,
    /// and a target column of zeros.
    fn moments(mean: f32, variance: f32) -> Vec<f32> {
        vec![mean, variance + mean * mean, 0.0, 0.0]
    }

    #[test]
    fn fedavg_pools_moments_exactly() {
        // 1 row at 0 and 3 rows at 4: pooled mean 3, mean square 12.
        let a = moments(0.0, 0.0);
        let b = moments(4.0, 0.0);
        let pooled = pool_moments(Rule::FedAvg, &[(1, &a), (3, &b)]).unwrap();
        assert!((pooled[0] - 3.0).abs() < 1e-6 && (pooled[1] - 12.0).abs() < 1e-5);
    }

    #[test]
    fn robust_moments_keep_the_spread_between_members_and_ignore_outliers() {
        // Members centred at 0, 10 and 20, each with variance 1, and one
        // liar. The separate medians would give mean 10, mean square 101:
        // variance 1, though the members' rows spread over ±10.
        let members = [
            moments(0.0, 1.0),
            moments(10.0, 1.0),
            moments(20.0, 1.0),
            moments(1e9, 1e9),
        ];
        let updates: Vec<(u64, &[f32])> = members.iter().map(|m| (100, m.as_slice())).collect();
        let pooled = pool_moments(Rule::Median, &updates).unwrap();
        let (mean, variance) = (pooled[0], pooled[1] - pooled[0] * pooled[0]);
        assert_eq!(mean, 15.0, "the median of 0, 10, 20 and 1e9");
        // Deviations from 15: 226, 26, 26, huge → median 126.
        assert!((variance - 126.0).abs() < 1e-2, "{variance}");
        let mut reversed = updates.clone();
        reversed.reverse();
        assert_eq!(pool_moments(Rule::Median, &reversed).unwrap(), pooled);
    }

    #[test]
    fn bad_moments_are_refused() {
        let odd = [1.0f32, 2.0, 3.0];
        assert!(pool_moments(Rule::Median, &[(1, &odd)]).is_err());
        let nan = [f32::NAN, 1.0, 0.0, 0.0];
        assert!(matches!(
            pool_moments(Rule::Median, &[(1, &nan)]),
            Err(AggregateError::NonFinite { index: 0 })
        ));
        assert_eq!(
            pool_moments(Rule::Median, &[]),
            Err(AggregateError::NoUpdates)
        );
    }
}
