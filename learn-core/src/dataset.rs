//! A table of numeric rows for one model: feature columns and a target, in
//! time order.
//!
//! Rows are kept in the order they were recorded (the CSV's row order, or the
//! generator's clock), because custom training splits by time: the first
//! 80 % trains, the last 20 % tests ([`Dataset::split_time`]).

use serde::{Deserialize, Serialize};

/// Feature rows (row-major) and their targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Feature column names, in the order of each row.
    pub features: Vec<String>,
    /// Target column name.
    pub target: String,
    /// `len() × features.len()` values, row after row.
    pub x: Vec<f32>,
    /// One target per row.
    pub y: Vec<f32>,
}

impl Dataset {
    /// An empty table with these columns.
    pub fn empty(features: Vec<String>, target: String) -> Self {
        Self {
            features,
            target,
            x: Vec::new(),
            y: Vec::new(),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.features.len()
    }

    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let f = self.n_features();
        &self.x[i * f..(i + 1) * f]
    }

    /// Appends one row. `features.len()` must equal [`Dataset::n_features`].
    pub fn push(&mut self, features: &[f32], target: f32) {
        assert_eq!(features.len(), self.n_features(), "row width");
        self.x.extend_from_slice(features);
        self.y.push(target);
    }

    /// Rows `range` as a new table.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        let f = self.n_features();
        Self {
            features: self.features.clone(),
            target: self.target.clone(),
            x: self.x[range.start * f..range.end * f].to_vec(),
            y: self.y[range.clone()].to_vec(),
        }
    }

    /// Splits by time: the first `round(len · train_fraction)` rows and the rest.
    pub fn split_time(&self, train_fraction: f64) -> (Self, Self) {
        let cut = ((self.len() as f64) * train_fraction.clamp(0.0, 1.0)).round() as usize;
        (self.slice(0..cut), self.slice(cut..self.len()))
    }

    /// Appends the rows of `other` (same columns in the same order).
    pub fn extend(&mut self, other: &Dataset) {
        assert_eq!(self.features, other.features, "columns");
        self.x.extend_from_slice(&other.x);
        self.y.extend_from_slice(&other.y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_time_order() {
        let mut d = Dataset::empty(vec!["a".into(), "b".into()], "y".into());
        for i in 0..10 {
            d.push(&[i as f32, -(i as f32)], i as f32 * 10.0);
        }
        let (train, test) = d.split_time(0.8);
        assert_eq!(train.len(), 8);
        assert_eq!(test.len(), 2);
        assert_eq!(test.row(0), &[8.0, -8.0]);
        assert_eq!(test.y, vec![80.0, 90.0]);
        let mut joined = train.clone();
        joined.extend(&test);
        assert_eq!(joined, d);
    }
}
