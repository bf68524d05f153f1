//! The benchmark's consortium: synthetic organisations, their rows for one
//! model, split by time into training and held-out test rows.

use mc_learn_core::{Dataset, ModelSchema, synth};
use rand::{SeedableRng, rngs::ChaCha8Rng};

use super::BenchError;

/// One organisation's data for the benchmark's model.
#[derive(Clone, Debug)]
pub struct Org {
    /// `org-00`, `org-01`, …
    pub name: String,
    /// Rows before the split.
    pub rows: usize,
    /// The earliest rows: what the organisation trains on.
    pub train: Dataset,
    /// The latest rows: held out, what every model is scored on.
    pub test: Dataset,
}

impl Org {
    /// All its rows in time order, and the fraction of them that is
    /// [`Org::train`]: what `custom::train` and `transfer::fine_tune` take
    /// to split them back the same way.
    pub fn whole(&self) -> (Dataset, f64) {
        let mut data = self.train.clone();
        data.extend(&self.test);
        let fraction = self.train.len() as f64 / data.len() as f64;
        (data, fraction)
    }
}

/// `n` organisations from [`synth::consortium`], each generated and split
/// by time at `train_fraction`.
///
/// The generator is the one `mc-node learn generate --orgs N --seed S`
/// uses (one `ChaCha8Rng` seeded with `seed` draws the profiles, then every
/// organisation's rows in turn), so the benchmark trains on the same tables
/// a demo would import. `max_rows` keeps each organisation's earliest rows
/// only (for quick runs); it is applied after generation, so a capped table
/// is a prefix of the full one.
pub fn consortium(
    schema: &ModelSchema,
    n: usize,
    seed: u64,
    max_rows: Option<usize>,
    train_fraction: f64,
) -> Result<Vec<Org>, BenchError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let profiles = synth::consortium(n, &mut rng);
    let mut orgs = Vec::with_capacity(n);
    for profile in &profiles {
        let mut data = synth::generate(profile, &mut rng)?.select(schema)?;
        if let Some(cap) = max_rows {
            data = data.slice(0..cap.min(data.len()));
        }
        let (train, test) = data.split_time(train_fraction);
        if train.is_empty() || test.is_empty() {
            return Err(BenchError::EmptySplit {
                org: profile.name.clone(),
                rows: data.len(),
            });
        }
        orgs.push(Org {
            name: profile.name.clone(),
            rows: data.len(),
            train,
            test,
        });
    }
    Ok(orgs)
}

/// The indices of the `round(fraction · n)` Byzantine participants, spread
/// evenly over the consortium (`⌈(k+1)·n / b⌉ − 1` for `k < b`): with 20
/// organisations and 20 %, `org-04`, `org-09`, `org-14` and `org-19`, which
/// mixes small, medium and large ones (sizes cycle with the index).
pub fn byzantine_indices(n: usize, fraction: f64) -> Vec<usize> {
    let b = ((n as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
    (0..b).map(|k| ((k + 1) * n).div_ceil(b) - 1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byzantine_participants_are_spread_evenly() {
        assert_eq!(byzantine_indices(20, 0.2), vec![4, 9, 14, 19]);
        assert_eq!(byzantine_indices(4, 0.25), vec![3]);
        assert_eq!(byzantine_indices(10, 0.0), Vec::<usize>::new());
        assert_eq!(byzantine_indices(3, 1.0), vec![0, 1, 2]);
    }
}
