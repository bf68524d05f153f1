//! Drift correction for non-IID participants: control variates in the
//! manner of SCAFFOLD (Karimireddy et al., ICML 2020), kept in the space of
//! parameter *displacements* so that they work with any local optimiser.
//!
//! # Why
//!
//! When organisations' data differ, every participant's local steps pull
//! the shared model towards its own optimum. Averaging such updates
//! converges slowly and to a worse point than training on the pooled rows
//! ("client drift"); on `mc-learn bench federated` the FedAvg model fitted
//! some organisations' own *training* rows with R² ≈ 0.4 where a central
//! model reached 0.99.
//!
//! # What every participant keeps
//!
//! Two vectors the size of the model, in "displacement per step per unit
//! learning rate": the federation's `g` and the member's own `gᵢ`. In a
//! round with `K` local steps at learning rate `η`, after each optimiser
//! step the member adds `η · (g − gᵢ)` to its weights: it moves the way the
//! whole federation moved last round rather than the way its own data
//! alone would take it.
//!
//! After the round, with base `x`, the member's update `yᵢ` and the
//! aggregate `x⁺`:
//!
//! - `gᵢ ← gᵢ − g + (yᵢ − x) / (K·η)`: the member's uncorrected average
//!   displacement this round (SCAFFOLD's "option II", in displacement
//!   units);
//! - `g ← (x⁺ − x) / (K·η)`: the average displacement of the federation,
//!   read from the aggregate. With every member reporting and FedAvg this
//!   is exactly the weighted mean of the members' `gᵢ`; under a robust rule
//!   it is the robust rule's view of it, so a Byzantine member moves `g` no
//!   more than it moves the model.
//!
//! # Nothing new is sent
//!
//! `g` is a function of the base and the aggregate, which every node that
//! accepted the same set holds byte for byte, and `gᵢ` is the member's
//! own business: the correction needs no message, signature or field
//! beyond those of the round, and a member that sat a round out simply
//! keeps its `gᵢ`.
//!
//! All arithmetic is in `f64` on `f32` inputs and is element-wise, so every
//! node computes identical vectors.

/// Whether a campaign corrects drift when its declaration does not say:
/// on. On `mc-learn bench federated` (20 non-IID organisations, 60 rounds
/// of 2 local epochs, FedAvg, Adam at 0.005) it raised the mean held-out
/// R² from 0.74 to 0.85.
pub const DEFAULT_DRIFT_CORRECTION: bool = true;

/// Why a control-variate update was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// Two vectors that must have one length do not.
    #[error("drift vectors differ in length: {expected} and {actual}")]
    Length { expected: usize, actual: usize },
    /// The round had no steps or no positive learning rate.
    #[error("a round of {steps} steps at learning rate {rate} has no displacement scale")]
    Scale { steps: u32, rate: f64 },
}

/// The federation's and one member's control variates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlVariates {
    /// The federation's average displacement per step per unit rate.
    pub global: Vec<f32>,
    /// This member's, from the last round it trained in.
    pub own: Vec<f32>,
}

fn scale(steps: u32, rate: f64) -> Result<f64, DriftError> {
    let s = f64::from(steps) * rate;
    if steps == 0 || !s.is_finite() || s <= 0.0 {
        return Err(DriftError::Scale { steps, rate });
    }
    Ok(s)
}

fn same_length(expected: usize, actual: usize) -> Result<(), DriftError> {
    if expected != actual {
        return Err(DriftError::Length { expected, actual });
    }
    Ok(())
}

impl ControlVariates {
    /// Zero variates for a model of `num_params` weights: no correction in
    /// the first round.
    pub fn zeros(num_params: usize) -> Self {
        Self {
            global: vec![0.0; num_params],
            own: vec![0.0; num_params],
        }
    }

    /// The displacement a member adds after each local step at learning
    /// rate `rate`: `rate · (g − gᵢ)`; `None` while it would be zero.
    pub fn step_correction(&self, rate: f64) -> Option<Vec<f32>> {
        if self.global.len() != self.own.len() || self.global == self.own {
            return None;
        }
        Some(
            self.global
                .iter()
                .zip(&self.own)
                .map(|(&g, &o)| (rate * (f64::from(g) - f64::from(o))) as f32)
                .collect(),
        )
    }

    /// The member's own variate after it trained `own_update` from `base`
    /// with `steps` steps at `rate` (the correction it applied came from
    /// `self`). Call before [`Self::advance_global`] of the same round.
    pub fn advance_own(
        &mut self,
        base: &[f32],
        own_update: &[f32],
        steps: u32,
        rate: f64,
    ) -> Result<(), DriftError> {
        let s = scale(steps, rate)?;
        let n = self.global.len();
        same_length(n, self.own.len())?;
        same_length(n, base.len())?;
        same_length(n, own_update.len())?;
        for k in 0..n {
            let moved = (f64::from(own_update[k]) - f64::from(base[k])) / s;
            self.own[k] = (f64::from(self.own[k]) - f64::from(self.global[k]) + moved) as f32;
        }
        Ok(())
    }

    /// The federation's variate after a round that went from `base` to
    /// `aggregate` with `steps` steps at `rate`.
    pub fn advance_global(
        &mut self,
        base: &[f32],
        aggregate: &[f32],
        steps: u32,
        rate: f64,
    ) -> Result<(), DriftError> {
        let s = scale(steps, rate)?;
        same_length(self.global.len(), base.len())?;
        same_length(base.len(), aggregate.len())?;
        for (g, (&b, &a)) in self.global.iter_mut().zip(base.iter().zip(aggregate)) {
            *g = ((f64::from(a) - f64::from(b)) / s) as f32;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_correction_until_the_variates_differ() {
        let cv = ControlVariates::zeros(3);
        assert_eq!(cv.step_correction(0.1), None);
    }

    #[test]
    fn own_variate_recovers_the_uncorrected_displacement() {
        // A member whose raw displacement per step per unit rate is `r`
        // and which applied the correction g − gᵢ moved by K·η·(r + g − gᵢ);
        // option II must give back exactly r.
        let mut cv = ControlVariates {
            global: vec![0.5, -1.0],
            own: vec![0.25, 2.0],
        };
        let (steps, rate) = (4u32, 0.5f64);
        let raw = [1.0f64, -3.0];
        let base = [10.0f32, 20.0];
        let update: Vec<f32> = (0..2)
            .map(|k| {
                let per_step = raw[k] + f64::from(cv.global[k]) - f64::from(cv.own[k]);
                (f64::from(base[k]) + f64::from(steps) * rate * per_step) as f32
            })
            .collect();
        cv.advance_own(&base, &update, steps, rate).unwrap();
        assert_eq!(cv.own, vec![1.0, -3.0]);
    }

    #[test]
    fn global_variate_is_the_aggregate_step() {
        let mut cv = ControlVariates::zeros(2);
        cv.advance_global(&[1.0, 1.0], &[3.0, 0.0], 2, 0.5).unwrap();
        assert_eq!(cv.global, vec![2.0, -1.0]);
        assert_eq!(cv.step_correction(0.1), Some(vec![0.2, -0.1]));
    }

    #[test]
    fn fedavg_of_own_variates_is_the_global_one() {
        // With every member reporting, the weighted mean of the members'
        // new variates equals the new global variate.
        let base = [0.0f32, 0.0];
        let updates = [([1.0f32, 2.0], 1.0f64), ([3.0, -2.0], 3.0)];
        let (steps, rate) = (2u32, 0.25);
        let total: f64 = updates.iter().map(|(_, w)| w).sum();
        let aggregate: Vec<f32> = (0..2)
            .map(|k| {
                (updates
                    .iter()
                    .map(|(u, w)| f64::from(u[k]) * w)
                    .sum::<f64>()
                    / total) as f32
            })
            .collect();
        let mut mean = [0.0f64; 2];
        for (u, w) in &updates {
            let mut cv = ControlVariates::zeros(2);
            cv.advance_own(&base, u, steps, rate).unwrap();
            for (m, &own) in mean.iter_mut().zip(&cv.own) {
                *m += f64::from(own) * w / total;
            }
        }
        let mut cv = ControlVariates::zeros(2);
        cv.advance_global(&base, &aggregate, steps, rate).unwrap();
        for (m, &g) in mean.iter().zip(&cv.global) {
            assert!((m - f64::from(g)).abs() < 1e-5, "{m} vs {g}");
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let mut cv = ControlVariates::zeros(2);
        assert_eq!(
            cv.advance_global(&[0.0], &[0.0, 1.0], 1, 0.1),
            Err(DriftError::Length {
                expected: 2,
                actual: 1
            })
        );
        assert!(matches!(
            cv.advance_own(&[0.0; 2], &[0.0; 2], 0, 0.1),
            Err(DriftError::Scale { .. })
        ));
        assert!(matches!(
            cv.advance_own(&[0.0; 2], &[0.0; 2], 3, 0.0),
            Err(DriftError::Scale { .. })
        ));
    }
}
