//! Reading a model's training data from CSV text.
//!
//! [`parse_csv`] takes the bytes of an uploaded file and the model's
//! [`ModelSchema`], and gives either the whole [`Dataset`] or an error that
//! says what to fix — never part of the file.
//!
//! # Rules
//!
//! - The file is UTF-8 (a leading byte-order mark is skipped), at most
//!   [`CsvLimits::max_bytes`] long, comma-separated, with `"` quoting.
//!   Spaces around fields are ignored; blank lines are skipped.
//! - The first line is the header. It names every feature column and the
//!   target (case-sensitive, any order); other columns are ignored, and a
//!   name may appear only once.
//! - Every other line is one row, in time order, with one field per header
//!   column. The model's columns hold finite decimal numbers (`3`, `-0.5`,
//!   `1e-3`); the target of a [`Task::BinaryClassification`] model is `0` or
//!   `1`. At most [`CsvLimits::max_rows`] rows.
//! - Every bad field is reported with its line in the file (the header is
//!   line 1) and its column ([`RowError`]); the error lists the first
//!   [`MAX_LISTED_ROW_ERRORS`] and counts them all.

use serde::{Deserialize, Serialize};

use crate::dataset::Dataset;
use crate::schema::{ModelSchema, Task};
use crate::table::quoted_list;

/// Most row errors a [`CsvError::BadRows`] lists; the rest are only counted.
pub const MAX_LISTED_ROW_ERRORS: usize = 100;

/// Longest field value quoted back in an error, in characters.
const MAX_QUOTED_CHARS: usize = 40;

/// How much a single file may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvLimits {
    /// Largest file, in bytes (default 64 MiB).
    pub max_bytes: usize,
    /// Most data rows, not counting the header (default 2,000,000).
    pub max_rows: usize,
}

impl Default for CsvLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_rows: 2_000_000,
        }
    }
}

/// One bad field, or one row with the wrong number of fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("line {line}{}: {reason}", column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct RowError {
    /// Line of the file the row starts on (the header is line 1).
    pub line: u64,
    /// The column of the bad field; `None` when the whole row is wrong.
    pub column: Option<String>,
    /// What is wrong.
    pub reason: RowErrorKind,
}

/// What is wrong with a row or a field. Its JSON form is tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RowErrorKind {
    /// The row has a different number of fields than the header.
    #[error("{found} fields, but the header has {expected}")]
    FieldCount {
        /// Fields in the header.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
    /// The field is empty.
    #[error("empty; a number is needed")]
    Empty,
    /// The field does not read as a number.
    #[error("{value:?} is not a number")]
    NotANumber {
        /// The field (its first 40 characters).
        value: String,
    },
    /// The field reads as infinity or NaN, or is out of `f32` range.
    #[error("{value:?} is not a finite number (or is out of range)")]
    NonFinite {
        /// The field (its first 40 characters).
        value: String,
    },
    /// The magnitude is over [`MAX_ABS_VALUE`]: its square, which the
    /// model's statistics need, would overflow `f32`.
    #[error("{value:?} is beyond ±1e18; rescale the column (e.g. to thousands or millions)")]
    TooLarge {
        /// The field (its first 40 characters).
        value: String,
    },
    /// A classification target other than 0 or 1.
    #[error("{value:?} is not 0 or 1, as a classification target must be")]
    NotBinary {
        /// The field (its first 40 characters).
        value: String,
    },
}

/// Why a file was not imported. Nothing of it was kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// The file is over the byte limit.
    #[error("the file is {bytes} bytes; the limit is {limit} bytes — upload less data")]
    TooLarge {
        /// Size of the file.
        bytes: usize,
        /// [`CsvLimits::max_bytes`].
        limit: usize,
    },
    /// The file is not UTF-8 text.
    #[error("line {line}: the file is not UTF-8 text; save it as UTF-8 CSV")]
    NotUtf8 {
        /// Line of the first byte that is not UTF-8.
        line: u64,
    },
    /// The file has no header line.
    #[error("the file is empty; it needs a header line naming the columns, then one row per line")]
    Empty,
    /// The file has a header but no rows.
    #[error("the file has a header but no rows of data")]
    NoRows,
    /// A column name appears twice in the header.
    #[error("line 1: column {name:?} appears twice in the header; rename or remove one")]
    DuplicateColumn {
        /// The repeated name.
        name: String,
    },
    /// Columns the model needs (features or target) are not in the header:
    /// all of them, in the schema's order.
    #[error(
        "line 1: the header has no column {}; the model needs every feature column and its target (names are case-sensitive)",
        quoted_list(.missing)
    )]
    MissingColumns {
        /// The missing column names.
        missing: Vec<String>,
    },
    /// More rows than [`CsvLimits::max_rows`].
    #[error("the file has more than {limit} rows; upload at most {limit}")]
    TooManyRows {
        /// [`CsvLimits::max_rows`].
        limit: usize,
    },
    /// The CSV reader itself failed (not expected for in-memory UTF-8 input).
    #[error("line {line}: cannot read CSV: {message}")]
    Malformed {
        /// Line where reading failed.
        line: u64,
        /// The reader's message.
        message: String,
    },
    /// Some fields or rows are bad.
    #[error("{}", bad_rows_message(.errors, *.total))]
    BadRows {
        /// The first [`MAX_LISTED_ROW_ERRORS`] errors, in file order.
        errors: Vec<RowError>,
        /// How many errors the file has in all.
        total: usize,
    },
}

fn bad_rows_message(errors: &[RowError], total: usize) -> String {
    const SHOWN: usize = 3;
    let mut message = if total == 1 {
        "1 bad value: ".to_owned()
    } else {
        format!("{total} bad values: ")
    };
    let shown: Vec<String> = errors.iter().take(SHOWN).map(ToString::to_string).collect();
    message.push_str(&shown.join("; "));
    if total > shown.len() {
        message.push_str(&format!("; and {} more", total - shown.len()));
    }
    message
}

impl CsvError {
    /// The listed row errors (empty unless [`CsvError::BadRows`]).
    pub fn row_errors(&self) -> &[RowError] {
        match self {
            CsvError::BadRows { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Reads `bytes` as CSV for `schema`: the schema's feature columns (in the
/// schema's order) and its target, every row, in file order.
pub fn parse_csv(
    bytes: &[u8],
    schema: &ModelSchema,
    limits: CsvLimits,
) -> Result<Dataset, CsvError> {
    if bytes.len() > limits.max_bytes {
        return Err(CsvError::TooLarge {
            bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        return Err(CsvError::NotUtf8 { line: line as u64 });
    }

    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(bytes);
    let mut record = ::csv::StringRecord::new();
    if !read(&mut reader, &mut record)? {
        return Err(CsvError::Empty);
    }
    let columns = Columns::locate(&record, schema)?;
    let binary_target = schema.task == Task::BinaryClassification;

    let mut dataset = Dataset::empty(schema.features.clone(), schema.target.clone());
    let mut problems = Problems::default();
    let mut features = vec![0.0f32; columns.features.len()];
    let mut rows = 0usize;
    while read(&mut reader, &mut record)? {
        rows += 1;
        if rows > limits.max_rows {
            return Err(CsvError::TooManyRows {
                limit: limits.max_rows,
            });
        }
        let line = record.position().map_or(0, ::csv::Position::line);
        if record.len() != columns.width {
            problems.report(
                line,
                None,
                RowErrorKind::FieldCount {
                    expected: columns.width,
                    found: record.len(),
                },
            );
            continue;
        }
        let mut field = |index: usize, name: &str, binary: bool| {
            parse_field(record.get(index).unwrap_or_default(), binary).unwrap_or_else(|reason| {
                problems.report(line, Some(name), reason);
                0.0
            })
        };
        for ((slot, &index), name) in features
            .iter_mut()
            .zip(&columns.features)
            .zip(&schema.features)
        {
            *slot = field(index, name, false);
        }
        let target = field(columns.target, &schema.target, binary_target);
        // Once any value is bad the import fails; stop collecting rows.
        if problems.total == 0 {
            dataset.push(&features, target);
        }
    }
    if problems.total > 0 {
        return Err(CsvError::BadRows {
            errors: problems.listed,
            total: problems.total,
        });
    }
    if rows == 0 {
        return Err(CsvError::NoRows);
    }
    Ok(dataset)
}

/// Row errors found so far: the first few, and how many in all.
#[derive(Default)]
struct Problems {
    listed: Vec<RowError>,
    total: usize,
}

impl Problems {
    fn report(&mut self, line: u64, column: Option<&str>, reason: RowErrorKind) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_ROW_ERRORS {
            self.listed.push(RowError {
                line,
                column: column.map(str::to_owned),
                reason,
            });
        }
    }
}

/// Where the schema's columns are in the file.
struct Columns {
    /// Fields per row (the header's).
    width: usize,
    /// Field index of each feature, in schema order.
    features: Vec<usize>,
    /// Field index of the target.
    target: usize,
}

impl Columns {
    fn locate(header: &::csv::StringRecord, schema: &ModelSchema) -> Result<Self, CsvError> {
        let mut index = std::collections::BTreeMap::new();
        for (i, name) in header.iter().enumerate() {
            if index.insert(name, i).is_some() {
                return Err(CsvError::DuplicateColumn {
                    name: name.to_owned(),
                });
            }
        }
        let wanted = schema
            .features
            .iter()
            .chain(std::iter::once(&schema.target));
        let missing: Vec<String> = wanted
            .clone()
            .filter(|c| !index.contains_key(c.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(CsvError::MissingColumns { missing });
        }
        let mut found: Vec<usize> = wanted.map(|c| index[c.as_str()]).collect();
        let target = found.pop().unwrap_or_default();
        Ok(Self {
            width: header.len(),
            features: found,
            target,
        })
    }
}

/// Reads the next record; `false` at the end of the file.
fn read(
    reader: &mut ::csv::Reader<&[u8]>,
    record: &mut ::csv::StringRecord,
) -> Result<bool, CsvError> {
    reader.read_record(record).map_err(|e| {
        let line = e.position().map_or(0, ::csv::Position::line);
        match e.kind() {
            ::csv::ErrorKind::Utf8 { .. } => CsvError::NotUtf8 { line },
            _ => CsvError::Malformed {
                line,
                message: e.to_string(),
            },
        }
    })
}

/// The largest magnitude a field may have: round 0 of a campaign and the
/// normaliser square every value, and `f32` ends at 3.4e38.
pub const MAX_ABS_VALUE: f32 = 1e18;

fn parse_field(text: &str, binary: bool) -> Result<f32, RowErrorKind> {
    if text.is_empty() {
        return Err(RowErrorKind::Empty);
    }
    let quote = || quote_value(text);
    let value: f32 = text
        .parse()
        .map_err(|_| RowErrorKind::NotANumber { value: quote() })?;
    if !value.is_finite() {
        return Err(RowErrorKind::NonFinite { value: quote() });
    }
    if value.abs() > MAX_ABS_VALUE {
        return Err(RowErrorKind::TooLarge { value: quote() });
    }
    if binary && value != 0.0 && value != 1.0 {
        return Err(RowErrorKind::NotBinary { value: quote() });
    }
    Ok(value)
}

/// The first [`MAX_QUOTED_CHARS`] characters of a field, `…` if cut.
fn quote_value(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
