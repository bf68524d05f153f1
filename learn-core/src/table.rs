//! A table of named numeric columns, before a model picks its columns.
//!
//! A [`Table`] holds every column an organisation records (the synthetic
//! generator's output, for instance), row after row in time order. A model
//! takes the columns its [`ModelSchema`] names with [`Table::select`], which
//! gives a [`Dataset`]; [`Table::to_csv`] writes the table in the CSV form
//! that [`crate::csv::parse_csv`] reads back.
//!
//! Every value is finite: [`Table::push_row`] refuses NaN and infinities, so
//! a table always survives a round trip through its CSV text.

use std::fmt::Write as _;

use crate::dataset::Dataset;
use crate::schema::ModelSchema;

/// Named `f32` columns, row-major, rows in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    columns: Vec<String>,
    /// `len() × columns.len()` values, row after row.
    values: Vec<f32>,
}

/// Why a table could not be built or grown.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TableError {
    /// A table needs at least one column.
    #[error("a table needs at least one column")]
    NoColumns,
    /// Two columns have the same name.
    #[error("column {0:?} is named twice")]
    DuplicateColumn(String),
    /// A row has a different number of values than the table has columns.
    #[error("row has {found} values; the table has {expected} columns")]
    WidthMismatch {
        /// Number of columns.
        expected: usize,
        /// Number of values in the row.
        found: usize,
    },
    /// A value is NaN or infinite.
    #[error("column {column:?}: {value} is not a finite number")]
    NonFinite {
        /// The column of the value.
        column: String,
        /// The value.
        value: f32,
    },
}

/// Why [`Table::select`] could not give a model its columns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// Columns the schema needs (features or target) that the table lacks,
    /// all of them, in the schema's order.
    #[error("the table has no column {}", quoted_list(.0))]
    MissingColumns(Vec<String>),
}

/// `"a", "b" and "c"`.
pub(crate) fn quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

impl Table {
    /// An empty table with these columns (at least one, no name twice).
    pub fn new<I, S>(columns: I) -> Result<Self, TableError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let columns: Vec<String> = columns.into_iter().map(Into::into).collect();
        if columns.is_empty() {
            return Err(TableError::NoColumns);
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &columns {
            if !seen.insert(c.as_str()) {
                return Err(TableError::DuplicateColumn(c.clone()));
            }
        }
        Ok(Self {
            columns,
            values: Vec::new(),
        })
    }

    /// Appends one row: a finite value for every column, in column order.
    pub fn push_row(&mut self, row: &[f32]) -> Result<(), TableError> {
        if row.len() != self.columns.len() {
            return Err(TableError::WidthMismatch {
                expected: self.columns.len(),
                found: row.len(),
            });
        }
        if let Some((i, &value)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(TableError::NonFinite {
                column: self.columns[i].clone(),
                value,
            });
        }
        self.values.extend_from_slice(row);
        Ok(())
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len() / self.columns.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Column names, in row order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Row `i`, if there is one.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        let width = self.columns.len();
        self.values.get(i * width..(i + 1) * width)
    }

    /// Every row, in time order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[f32]> + '_ {
        self.values.chunks_exact(self.columns.len())
    }

    /// The values of column `name`, top to bottom.
    pub fn column(&self, name: &str) -> Option<Vec<f32>> {
        let index = self.column_index(name)?;
        Some(self.rows().map(|row| row[index]).collect())
    }

    fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The schema's features and target as a [`Dataset`]; other columns are
    /// left out. Every column the schema needs and the table lacks is named
    /// in the error.
    pub fn select(&self, schema: &ModelSchema) -> Result<Dataset, SelectError> {
        let wanted = schema
            .features
            .iter()
            .chain(std::iter::once(&schema.target));
        let mut indices = Vec::with_capacity(schema.features.len() + 1);
        let mut missing = Vec::new();
        for name in wanted {
            match self.column_index(name) {
                Some(i) => indices.push(i),
                None => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(SelectError::MissingColumns(missing));
        }
        let (target_index, feature_indices) = indices.split_last().expect("target pushed last");
        let mut dataset = Dataset::empty(schema.features.clone(), schema.target.clone());
        dataset.x.reserve(self.len() * feature_indices.len());
        dataset.y.reserve(self.len());
        for row in self.rows() {
            dataset.x.extend(feature_indices.iter().map(|&i| row[i]));
            dataset.y.push(row[*target_index]);
        }
        Ok(dataset)
    }

    /// The table as CSV text: a header line, then one line per row. Values
    /// use the shortest decimal form that reads back as the same `f32`
    /// (`3`, `0.25`, `1e-7`).
    pub fn to_csv(&self) -> String {
        let mut out = String::with_capacity(self.values.len() * 8 + 64);
        for (i, name) in self.columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_csv_field(&mut out, name);
        }
        out.push('\n');
        for row in self.rows() {
            for (i, &value) in row.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_number(&mut out, value);
            }
            out.push('\n');
        }
        out
    }
}

/// Quotes `field` when it would otherwise not read back as itself.
fn push_csv_field(out: &mut String, field: &str) {
    let needs_quotes = field.is_empty()
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace)
        || field.contains([',', '"', '\n', '\r']);
    if needs_quotes {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Rust's float formatting prints the shortest digits that round-trip; the
/// exponent form keeps very large and very small magnitudes short.
fn push_number(out: &mut String, value: f32) {
    let magnitude = value.abs();
    // Writing to a String cannot fail.
    let _ = if magnitude != 0.0 && !(1e-5..1e16).contains(&magnitude) {
        write!(out, "{value:e}")
    } else {
        write!(out, "{value}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Task;

    fn schema(features: &[&str], target: &str) -> ModelSchema {
        ModelSchema {
            name: "m".into(),
            task: Task::Regression,
            features: features.iter().map(|s| (*s).to_owned()).collect(),
            target: target.into(),
            hidden_layers: vec![],
            target_scale: Default::default(),
            log_features: Vec::new(),
        }
    }

    #[test]
    fn select_picks_columns_in_schema_order() {
        let mut t = Table::new(["a", "b", "c", "y"]).unwrap();
        t.push_row(&[1.0, 2.0, 3.0, 10.0]).unwrap();
        t.push_row(&[4.0, 5.0, 6.0, 20.0]).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.column("b"), Some(vec![2.0, 5.0]));
        assert_eq!(t.column("z"), None);
        let d = t.select(&schema(&["c", "a"], "y")).unwrap();
        assert_eq!(d.x, vec![3.0, 1.0, 6.0, 4.0]);
        assert_eq!(d.y, vec![10.0, 20.0]);
    }

    #[test]
    fn select_names_every_missing_column() {
        let t = Table::new(["a", "y"]).unwrap();
        let err = t.select(&schema(&["a", "b", "c"], "z")).unwrap_err();
        assert_eq!(
            err,
            SelectError::MissingColumns(vec!["b".into(), "c".into(), "z".into()])
        );
        assert_eq!(
            err.to_string(),
            r#"the table has no column "b", "c" or "z""#
        );
    }

    #[test]
    fn bad_tables_and_rows_are_refused() {
        assert_eq!(Table::new(Vec::<String>::new()), Err(TableError::NoColumns));
        assert_eq!(
            Table::new(["a", "a"]),
            Err(TableError::DuplicateColumn("a".into()))
        );
        let mut t = Table::new(["a", "b"]).unwrap();
        assert!(matches!(
            t.push_row(&[1.0]),
            Err(TableError::WidthMismatch {
                expected: 2,
                found: 1
            })
        ));
        assert!(matches!(
            t.push_row(&[1.0, f32::NAN]),
            Err(TableError::NonFinite { column, .. }) if column == "b"
        ));
        assert!(t.is_empty());
        assert_eq!(t.row(0), None);
    }

    #[test]
    fn csv_is_compact_and_round_trips() {
        let mut t = Table::new(["a", "odd, name"]).unwrap();
        let values = [
            0.0,
            -0.0,
            3.0,
            0.1,
            -2.5,
            1e-7,
            f32::MAX,
            f32::MIN_POSITIVE,
            123_456.79,
            1.0 / 3.0,
        ];
        for pair in values.chunks(2) {
            t.push_row(pair).unwrap();
        }
        let text = t.to_csv();
        assert!(text.starts_with("a,\"odd, name\"\n0,-0\n3,0.1\n-2.5,1e-7\n"));
        let mut lines = text.lines().skip(1);
        let back: Vec<f32> = lines
            .by_ref()
            .flat_map(|l| {
                l.split(',')
                    .map(|v| v.parse::<f32>().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(back.len(), values.len());
        for (a, b) in back.iter().zip(values) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
    }
}
