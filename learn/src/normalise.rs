//! Per-column standardisation, fitted on one node's data or pooled from the
//! moments of many.
//!
//! A model's weights only make sense with the normaliser they were trained
//! with, so a [`Normaliser`] travels with the weights (it is in the
//! safetensors file). In a federation every participant must use the same
//! one: each node computes its [`Moments`], the moments are summed (in a
//! canonical order, so every node gets the same sums) and
//! [`Normaliser::from_moments`] turns them into the pooled mean and
//! variance.

use mc_learn_core::{Dataset, ModelSchema, TargetScale, Task};
use serde::{Deserialize, Serialize};

use crate::ModelError;

/// Smallest standard deviation used: a constant column is centred, not
/// blown up.
pub const STD_FLOOR: f32 = 1e-6;

/// On a log scale, standardised outputs are clamped to ±this before `exp`:
/// a model far outside its training data cannot predict values billions of
/// times the typical one (six deviations of `ln y` is already extreme).
pub const LOG_OUTPUT_BOUND: f32 = 6.0;

/// Count, sums and sums of squares of every feature column and of the
/// target (last), in f64.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of rows.
    pub count: u64,
    /// `Σx` per feature, then `Σy`.
    pub sums: Vec<f64>,
    /// `Σx²` per feature, then `Σy²`.
    pub sums_of_squares: Vec<f64>,
}

impl Moments {
    /// The moments of `data`'s rows, summed in row order.
    pub fn of(data: &Dataset) -> Result<Self, ModelError> {
        let f = data.n_features();
        if data.x.len() != data.len() * f {
            return Err(ModelError::Ragged {
                rows: data.len(),
                values: data.x.len(),
                features: f,
            });
        }
        let mut sums = vec![0.0f64; f + 1];
        let mut sums_of_squares = vec![0.0f64; f + 1];
        for i in 0..data.len() {
            let values = data.row(i).iter().chain(std::iter::once(&data.y[i]));
            for (j, &v) in values.enumerate() {
                let v = f64::from(v);
                sums[j] += v;
                sums_of_squares[j] += v * v;
            }
        }
        Ok(Self {
            count: data.len() as u64,
            sums,
            sums_of_squares,
        })
    }

    /// The moments of `data` as a model of `schema` sees it: the schema's
    /// log-scale features on their log scale ([`ModelSchema::model_inputs`]).
    pub fn of_model_inputs(schema: &ModelSchema, data: &Dataset) -> Result<Self, ModelError> {
        if schema.log_features.is_empty() {
            return Self::of(data);
        }
        let seen = Dataset {
            features: data.features.clone(),
            target: data.target.clone(),
            x: schema.model_inputs(&data.x).into_owned(),
            y: data.y.clone(),
        };
        Self::of(&seen)
    }

    /// Adds another node's moments to these (same columns).
    pub fn add(&mut self, other: &Moments) -> Result<(), ModelError> {
        if other.sums.len() != self.sums.len()
            || other.sums_of_squares.len() != self.sums_of_squares.len()
        {
            return Err(ModelError::MomentsShape {
                expected: self.sums.len(),
                got: other.sums.len(),
            });
        }
        self.count += other.count;
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += b;
        }
        for (a, b) in self.sums_of_squares.iter_mut().zip(&other.sums_of_squares) {
            *a += b;
        }
        Ok(())
    }

    /// The moments as one vector, `[count, sums…, sums_of_squares…]`, for a
    /// transport that carries plain numbers.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(1 + 2 * self.sums.len());
        out.push(self.count as f64);
        out.extend(&self.sums);
        out.extend(&self.sums_of_squares);
        out
    }

    /// The inverse of [`Moments::to_vec`] for `n_features` feature columns.
    pub fn from_vec(n_features: usize, v: &[f64]) -> Result<Self, ModelError> {
        let width = n_features + 1;
        if v.len() != 1 + 2 * width {
            return Err(ModelError::MomentsShape {
                expected: 1 + 2 * width,
                got: v.len(),
            });
        }
        if !(v[0] >= 0.0 && v[0].fract() == 0.0 && v[0] <= u64::MAX as f64) {
            return Err(ModelError::BadMoments("count is not a whole number"));
        }
        Ok(Self {
            count: v[0] as u64,
            sums: v[1..1 + width].to_vec(),
            sums_of_squares: v[1 + width..].to_vec(),
        })
    }
}

/// Per-feature mean and standard deviation, and for regression the target's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normaliser {
    /// Mean of each feature column.
    pub feature_mean: Vec<f32>,
    /// Standard deviation of each feature column (at least [`STD_FLOOR`]).
    pub feature_std: Vec<f32>,
    /// Target mean (regression); 0 for classification.
    pub target_mean: f32,
    /// Target standard deviation (regression, at least [`STD_FLOOR`]); 1
    /// for classification, whose 0/1 targets are used as they are.
    pub target_std: f32,
}

impl Normaliser {
    /// Fitted on `data` (population statistics) for a model of `schema`:
    /// its log-scale features are standardised on their log scale.
    pub fn fit(schema: &ModelSchema, data: &Dataset) -> Result<Self, ModelError> {
        let m = Moments::of_model_inputs(schema, data)?;
        Self::from_moments(schema.task, m.count, &m.sums, &m.sums_of_squares)
    }

    /// Pooled mean and variance from summed moments: `sums` and
    /// `sums_of_squares` hold each feature column then the target, as in
    /// [`Moments`].
    pub fn from_moments(
        task: Task,
        count: u64,
        sums: &[f64],
        sums_of_squares: &[f64],
    ) -> Result<Self, ModelError> {
        if sums.len() != sums_of_squares.len() || sums.len() < 2 {
            return Err(ModelError::MomentsShape {
                expected: sums.len().max(2),
                got: sums_of_squares.len(),
            });
        }
        if count == 0 {
            return Err(ModelError::BadMoments("no rows"));
        }
        if sums.iter().chain(sums_of_squares).any(|v| !v.is_finite()) {
            return Err(ModelError::BadMoments("a sum is not finite"));
        }
        let n = count as f64;
        let stats = |j: usize| -> (f32, f32) {
            let mean = sums[j] / n;
            // Population variance; clamped because rounding can take a
            // constant column a hair below zero.
            let var = (sums_of_squares[j] / n - mean * mean).max(0.0);
            (mean as f32, (var.sqrt() as f32).max(STD_FLOOR))
        };
        let f = sums.len() - 1;
        let (feature_mean, feature_std) = (0..f).map(stats).unzip();
        let (target_mean, target_std) = match task {
            Task::Regression => stats(f),
            Task::BinaryClassification => (0.0, 1.0),
        };
        Ok(Self {
            feature_mean,
            feature_std,
            target_mean,
            target_std,
        })
    }

    /// The identity for `n_features` columns (mean 0, std 1), for a model
    /// whose normaliser is set later.
    pub fn identity(n_features: usize) -> Self {
        Self {
            feature_mean: vec![0.0; n_features],
            feature_std: vec![1.0; n_features],
            target_mean: 0.0,
            target_std: 1.0,
        }
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.feature_mean.len()
    }

    /// Standardised copy of row-major features `x`.
    pub fn features(&self, x: &[f32]) -> Vec<f32> {
        let f = self.n_features();
        if f == 0 {
            return x.to_vec();
        }
        x.iter()
            .enumerate()
            .map(|(i, &v)| (v - self.feature_mean[i % f]) / self.feature_std[i % f])
            .collect()
    }

    /// Standardised targets.
    pub fn targets(&self, y: &[f32]) -> Vec<f32> {
        y.iter()
            .map(|&v| (v - self.target_mean) / self.target_std)
            .collect()
    }

    /// A standardised model output back in target units.
    pub fn target_from_standard(&self, v: f32) -> f32 {
        v * self.target_std + self.target_mean
    }

    /// For a log-scale target ([`TargetScale::Log`]): the mean and standard
    /// deviation `ln y` is standardised with, those of the log-normal
    /// distribution with the target's mean `m` and deviation `s`:
    /// `σ² = ln(1 + s²/m²)`, `μ = ln m − σ²/2`. They follow from the same
    /// pooled moments as everything else, so round 0 of a campaign needs no
    /// second pass; they only have to put `ln y` near mean 0 and deviation
    /// one. A file's reader recomputes them from `target_mean` and
    /// `target_std`.
    pub fn log_target(&self) -> Result<(f32, f32), ModelError> {
        let (m, s) = (f64::from(self.target_mean), f64::from(self.target_std));
        if !(m > 0.0 && m.is_finite() && s.is_finite()) {
            return Err(ModelError::BadMoments(
                "a log-scale target needs a positive mean",
            ));
        }
        let variance = (1.0 + (s / m) * (s / m)).ln();
        let mu = m.ln() - variance / 2.0;
        Ok((mu as f32, (variance.sqrt() as f32).max(STD_FLOOR)))
    }

    /// Standardised targets on `scale`.
    pub fn targets_on(&self, scale: TargetScale, y: &[f32]) -> Result<Vec<f32>, ModelError> {
        match scale {
            TargetScale::Linear => Ok(self.targets(y)),
            TargetScale::Log => {
                let (mu, sigma) = self.log_target()?;
                Ok(y.iter().map(|&v| (v.ln() - mu) / sigma).collect())
            }
        }
    }

    /// Standardised model outputs back in target units, on `scale`.
    pub fn outputs_on(&self, scale: TargetScale, out: &mut [f32]) -> Result<(), ModelError> {
        match scale {
            TargetScale::Linear => out
                .iter_mut()
                .for_each(|v| *v = self.target_from_standard(*v)),
            TargetScale::Log => {
                let (mu, sigma) = self.log_target()?;
                out.iter_mut().for_each(|v| {
                    let bounded = v.clamp(-LOG_OUTPUT_BOUND, LOG_OUTPUT_BOUND);
                    *v = (bounded * sigma + mu).exp()
                });
            }
        }
        Ok(())
    }

    /// Checks the vectors' lengths and that every value is finite and every
    /// standard deviation positive (for normalisers read from a file).
    pub fn validate(&self, n_features: usize) -> Result<(), ModelError> {
        if self.feature_mean.len() != n_features || self.feature_std.len() != n_features {
            return Err(ModelError::MomentsShape {
                expected: n_features,
                got: self.feature_mean.len().max(self.feature_std.len()),
            });
        }
        let finite = self
            .feature_mean
            .iter()
            .chain(&self.feature_std)
            .chain([&self.target_mean, &self.target_std])
            .all(|v| v.is_finite());
        let positive = self
            .feature_std
            .iter()
            .chain([&self.target_std])
            .all(|&v| v > 0.0);
        if finite && positive {
            Ok(())
        } else {
            Err(ModelError::BadMoments(
                "non-finite mean or non-positive std",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(task: Task, log_features: &[&str]) -> ModelSchema {
        ModelSchema {
            name: "m".into(),
            task,
            features: vec!["a".into(), "b".into()],
            target: "y".into(),
            hidden_layers: vec![4],
            target_scale: TargetScale::Linear,
            log_features: log_features.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn table(rows: &[([f32; 2], f32)]) -> Dataset {
        let mut d = Dataset::empty(vec!["a".into(), "b".into()], "y".into());
        for (x, y) in rows {
            d.push(x, *y);
        }
        d
    }

    #[test]
    fn pooled_moments_equal_fit_on_all_rows() {
        let first = table(&[([1.0, 5.0], 2.0), ([3.0, 5.0], 4.0)]);
        let second = table(&[([5.0, 5.0], 9.0)]);
        let mut all = first.clone();
        all.extend(&second);
        let mut pooled = Moments::of(&first).unwrap();
        pooled.add(&Moments::of(&second).unwrap()).unwrap();
        let wire = Moments::from_vec(2, &pooled.to_vec()).unwrap();
        assert_eq!(wire, pooled);
        let from_pool = Normaliser::from_moments(
            Task::Regression,
            wire.count,
            &wire.sums,
            &wire.sums_of_squares,
        )
        .unwrap();
        let direct = Normaliser::fit(&schema(Task::Regression, &[]), &all).unwrap();
        assert_eq!(from_pool, direct);
        assert_eq!(direct.feature_mean, vec![3.0, 5.0]);
        // The constant column gets the floor, not zero.
        assert_eq!(direct.feature_std[1], STD_FLOOR);
        assert_eq!(direct.target_mean, 5.0);
    }

    #[test]
    fn log_features_are_standardised_on_their_log_scale() {
        let e1 = 1.0f32.exp_m1();
        let e3 = 3.0f32.exp_m1();
        let d = table(&[([1.0, e1], 0.0), ([3.0, e3], 1.0)]);
        let n = Normaliser::fit(&schema(Task::Regression, &["b"]), &d).unwrap();
        assert_eq!(n.feature_mean[0], 2.0, "a stays linear");
        assert!((n.feature_mean[1] - 2.0).abs() < 1e-5, "mean of ln(1 + b)");
        assert!((n.feature_std[1] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn classification_targets_are_left_alone() {
        let d = table(&[([1.0, 2.0], 0.0), ([2.0, 3.0], 1.0)]);
        let n = Normaliser::fit(&schema(Task::BinaryClassification, &[]), &d).unwrap();
        assert_eq!((n.target_mean, n.target_std), (0.0, 1.0));
        assert_eq!(n.targets(&d.y), d.y);
    }

    #[test]
    fn bad_moments_are_errors() {
        let mut ragged = table(&[([1.0, 2.0], 0.0)]);
        ragged.x.pop();
        assert!(matches!(
            Moments::of(&ragged),
            Err(ModelError::Ragged { .. })
        ));
        assert!(Moments::from_vec(2, &[1.0]).is_err());
        assert!(Moments::from_vec(1, &[0.5, 0.0, 0.0, 0.0, 0.0]).is_err());
        assert!(Normaliser::from_moments(Task::Regression, 0, &[0.0; 2], &[0.0; 2]).is_err());
        assert!(
            Normaliser::from_moments(Task::Regression, 1, &[f64::NAN, 0.0], &[0.0; 2]).is_err()
        );
    }
}
