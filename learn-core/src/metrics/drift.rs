//! Has the data moved away from what the model was trained on?
//!
//! A [`DriftDetector`] is fitted on the reference data (what the model was
//! trained or validated on) and that data's residuals (`target − prediction`,
//! preferably on held-out rows). [`DriftDetector::check`] compares a window
//! of current data and its residuals and returns a [`DriftReport`]; a node
//! retrains when [`DriftReport::detected`] is true.
//!
//! # Signals and thresholds (the [`DriftConfig`] defaults)
//!
//! - **Feature drift**: the population stability index ([`psi`]) of every
//!   feature over [`DEFAULT_BINS`] quantile bins of the reference. The usual
//!   reading is below 0.1 stable, 0.1–0.25 moderate, above 0.25 a major
//!   shift; a PSI above `psi_threshold` = 0.25 is drift.
//! - **Residual shift**: how far the mean residual moved, in reference
//!   residual standard deviations. Drift when it is above
//!   `residual_shift_threshold` = 0.5 *and* more than
//!   `residual_z_threshold` = 3 standard errors of the current mean (so a
//!   short window's noise does not trigger).
//! - **Residual growth**: the current median absolute residual over the
//!   reference's. Drift above `residual_ratio_threshold` = 1.5 (typical
//!   errors 50 % larger than the model showed on the reference). The median
//!   keeps a window with a few more incidents (large but rare errors) from
//!   reading as a worse model.
//!
//! The reference and the window should cover comparable time: calendar
//! features (`hour_of_day`, `day_of_week`) of a one-day window differ from a
//! month's by construction; list such columns in
//! [`DriftConfig::ignored_features`] or use windows of whole weeks.

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;

/// Quantile bins [`psi`] uses unless told otherwise.
pub const DEFAULT_BINS: usize = 10;

/// Smallest bin share [`psi`] uses, so that an empty bin gives a large but
/// finite term instead of an infinite one.
pub const PSI_EPSILON: f64 = 1e-4;

/// Most bins [`psi`] uses.
const MAX_BINS: usize = 1000;

/// Population stability index of `current` against `reference`:
/// `Σ (cᵢ − rᵢ)·ln(cᵢ/rᵢ)` over `bins` bins whose edges are quantiles of the
/// reference (repeated edges merged), bin shares floored at
/// [`PSI_EPSILON`]. Non-finite values are left out; with no value on either
/// side the index is 0. `bins` is taken within 1–1000.
pub fn psi(reference: &[f32], current: &[f32], bins: usize) -> f64 {
    let Some(binning) = Binning::fit(reference, bins) else {
        return 0.0;
    };
    binning.psi(current).unwrap_or(0.0)
}

/// Quantile bins of one reference column and the reference's share in each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Binning {
    /// Upper edges (inclusive) of every bin but the last, ascending.
    edges: Vec<f32>,
    /// Reference share of each bin (`edges.len() + 1` of them).
    shares: Vec<f64>,
}

impl Binning {
    /// `None` when `reference` has no finite value.
    fn fit(reference: &[f32], bins: usize) -> Option<Self> {
        let mut sorted: Vec<f32> = reference
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f32::total_cmp);
        let bins = bins.clamp(1, MAX_BINS);
        let last = (sorted.len() - 1) as f64;
        let mut edges: Vec<f32> = (1..bins)
            .map(|i| sorted[(last * i as f64 / bins as f64).round() as usize])
            .collect();
        edges.dedup();
        let shares = Self::shares_of(&edges, &sorted)?;
        Some(Self { edges, shares })
    }

    /// Share of `values` in each bin; `None` when no value is finite.
    fn shares_of(edges: &[f32], values: &[f32]) -> Option<Vec<f64>> {
        let mut counts = vec![0u64; edges.len() + 1];
        let mut n = 0u64;
        for &v in values.iter().filter(|v| v.is_finite()) {
            counts[edges.partition_point(|&e| e < v)] += 1;
            n += 1;
        }
        (n > 0).then(|| counts.iter().map(|&c| c as f64 / n as f64).collect())
    }

    fn psi(&self, current: &[f32]) -> Option<f64> {
        let shares = Self::shares_of(&self.edges, current)?;
        Some(
            self.shares
                .iter()
                .zip(&shares)
                .map(|(&r, &c)| {
                    let (r, c) = (r.max(PSI_EPSILON), c.max(PSI_EPSILON));
                    (c - r) * (c / r).ln()
                })
                .sum(),
        )
    }
}

/// When [`DriftDetector::check`] reports drift.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DriftConfig {
    /// Quantile bins per feature (default 10).
    pub bins: usize,
    /// PSI above which a feature has drifted (default 0.25).
    pub psi_threshold: f64,
    /// Mean residual shift, in reference standard deviations, above which
    /// residuals have drifted (default 0.5)…
    pub residual_shift_threshold: f64,
    /// …if it is also this many standard errors of the current mean
    /// (default 3).
    pub residual_z_threshold: f64,
    /// Current over reference median absolute residual above which the
    /// model has degraded (default 1.5).
    pub residual_ratio_threshold: f64,
    /// Fewest rows a reference or a window may have (default 30).
    pub min_rows: usize,
    /// Features not checked (calendar columns of short windows, say).
    pub ignored_features: Vec<String>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            bins: DEFAULT_BINS,
            psi_threshold: 0.25,
            residual_shift_threshold: 0.5,
            residual_z_threshold: 3.0,
            residual_ratio_threshold: 1.5,
            min_rows: 30,
            ignored_features: Vec::new(),
        }
    }
}

/// Why drift could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriftError {
    /// The reference or the window has fewer rows than
    /// [`DriftConfig::min_rows`].
    #[error("{rows} rows; drift needs at least {min}")]
    TooFewRows {
        /// Rows given.
        rows: usize,
        /// [`DriftConfig::min_rows`].
        min: usize,
    },
    /// Residuals were given, but not one per row.
    #[error("{residuals} residuals for {rows} rows")]
    ResidualCount {
        /// Rows of the data.
        rows: usize,
        /// Residuals given.
        residuals: usize,
    },
    /// A residual is NaN or infinite.
    #[error("residual {index} is not finite")]
    NonFiniteResidual {
        /// Its position.
        index: usize,
    },
    /// The window's feature columns differ from the reference's.
    #[error("the data has columns {found:?}; the reference had {expected:?}")]
    Columns {
        /// The reference's feature columns.
        expected: Vec<String>,
        /// The window's.
        found: Vec<String>,
    },
}

/// Summary of a set of residuals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct ResidualStats {
    mean: f64,
    std: f64,
    /// Median absolute residual.
    typical: f64,
    n: usize,
}

impl ResidualStats {
    /// `None` for no residuals (residual checks are skipped).
    fn of(residuals: &[f32], rows: usize) -> Result<Option<Self>, DriftError> {
        if residuals.is_empty() {
            return Ok(None);
        }
        if residuals.len() != rows {
            return Err(DriftError::ResidualCount {
                rows,
                residuals: residuals.len(),
            });
        }
        if let Some(index) = residuals.iter().position(|r| !r.is_finite()) {
            return Err(DriftError::NonFiniteResidual { index });
        }
        let n = residuals.len() as f64;
        let mean = residuals.iter().map(|&r| f64::from(r)).sum::<f64>() / n;
        let var = residuals
            .iter()
            .map(|&r| (f64::from(r) - mean).powi(2))
            .sum::<f64>()
            / n;
        let mut absolute: Vec<f64> = residuals.iter().map(|&r| f64::from(r).abs()).collect();
        absolute.sort_by(f64::total_cmp);
        let mid = absolute.len() / 2;
        let typical = if absolute.len() % 2 == 1 {
            absolute[mid]
        } else {
            (absolute[mid - 1] + absolute[mid]) / 2.0
        };
        Ok(Some(Self {
            mean,
            std: var.sqrt(),
            typical,
            n: residuals.len(),
        }))
    }
}

/// What a check found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Whether any signal passed its threshold: retrain.
    pub detected: bool,
    /// The largest feature PSI.
    pub score: f64,
    /// PSI of each checked feature, in column order.
    pub per_feature: Vec<(String, f64)>,
    /// Change of the mean residual in reference standard deviations (0 when
    /// residuals were not given on both sides).
    pub residual_shift: f64,
    /// Current over reference median absolute residual (1 when residuals
    /// were not given on both sides).
    pub residual_ratio: f64,
    /// One sentence per signal that passed its threshold.
    pub reasons: Vec<String>,
}

/// The reference distribution of a model's features and residuals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftDetector {
    config: DriftConfig,
    features: Vec<String>,
    /// Per feature; `None` for ignored ones and ones with no finite value.
    binnings: Vec<Option<Binning>>,
    residuals: Option<ResidualStats>,
}

impl DriftDetector {
    /// Fits with the default [`DriftConfig`]. `reference_residuals` has one
    /// residual per row, or is empty to check features only.
    pub fn fit(reference: &Dataset, reference_residuals: &[f32]) -> Result<Self, DriftError> {
        Self::fit_with(DriftConfig::default(), reference, reference_residuals)
    }

    /// Fits with `config`.
    pub fn fit_with(
        config: DriftConfig,
        reference: &Dataset,
        reference_residuals: &[f32],
    ) -> Result<Self, DriftError> {
        check_rows(reference, &config)?;
        let residuals = ResidualStats::of(reference_residuals, reference.len())?;
        let binnings = (0..reference.n_features())
            .map(|j| {
                if config.ignored_features.contains(&reference.features[j]) {
                    None
                } else {
                    Binning::fit(&column(reference, j), config.bins)
                }
            })
            .collect();
        Ok(Self {
            config,
            features: reference.features.clone(),
            binnings,
            residuals,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    /// Compares `current` (same feature columns as the reference) and its
    /// residuals (one per row, or empty) with the reference.
    pub fn check(
        &self,
        current: &Dataset,
        current_residuals: &[f32],
    ) -> Result<DriftReport, DriftError> {
        if current.features != self.features {
            return Err(DriftError::Columns {
                expected: self.features.clone(),
                found: current.features.clone(),
            });
        }
        check_rows(current, &self.config)?;
        let residuals = ResidualStats::of(current_residuals, current.len())?;
        let config = &self.config;
        let mut reasons = Vec::new();

        let mut per_feature = Vec::new();
        for (j, (name, binning)) in self.features.iter().zip(&self.binnings).enumerate() {
            let Some(binning) = binning else { continue };
            let value = binning.psi(&column(current, j)).unwrap_or(0.0);
            if value > config.psi_threshold {
                reasons.push(format!(
                    "{name}: PSI {value:.2} > {} (its distribution has shifted)",
                    config.psi_threshold
                ));
            }
            per_feature.push((name.clone(), value));
        }
        let score = per_feature.iter().map(|(_, v)| *v).fold(0.0, f64::max);

        let (mut residual_shift, mut residual_ratio) = (0.0, 1.0);
        if let (Some(reference), Some(current)) = (self.residuals, residuals) {
            residual_shift = (current.mean - reference.mean).abs() / reference.std.max(1e-12);
            let z = residual_shift * (current.n as f64).sqrt();
            if residual_shift > config.residual_shift_threshold && z > config.residual_z_threshold {
                reasons.push(format!(
                    "mean residual moved {:+.3} ({residual_shift:.2} reference standard deviations, {z:.1} standard errors)",
                    current.mean - reference.mean
                ));
            }
            residual_ratio = current.typical / reference.typical.max(1e-12);
            if residual_ratio > config.residual_ratio_threshold {
                reasons.push(format!(
                    "typical residual is {residual_ratio:.2}× the reference's (median |residual| {:.3} vs {:.3})",
                    current.typical, reference.typical
                ));
            }
        }

        Ok(DriftReport {
            detected: !reasons.is_empty(),
            score,
            per_feature,
            residual_shift,
            residual_ratio,
            reasons,
        })
    }
}

fn check_rows(data: &Dataset, config: &DriftConfig) -> Result<(), DriftError> {
    if data.len() < config.min_rows.max(1) {
        return Err(DriftError::TooFewRows {
            rows: data.len(),
            min: config.min_rows.max(1),
        });
    }
    Ok(())
}

/// Column `j` of `data`, skipping rows cut short (a malformed dataset).
fn column(data: &Dataset, j: usize) -> Vec<f32> {
    let width = data.n_features();
    data.x
        .chunks_exact(width.max(1))
        .filter_map(|row| row.get(j).copied())
        .collect()
}
