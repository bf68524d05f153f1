//! [`Json`]: a JSON value kept as its exact text.
//!
//! A knowledge entry must read back exactly as it was written. Parsing into
//! `serde_json::Value` does not guarantee that: without serde_json's
//! `arbitrary_precision` an integer beyond 64 bits becomes a float
//! (`18446744073709551617` → `1.8446744073709552e19`), and the default float
//! parser may land one ULP off (`1.4000000000000001` → `1.4`). The
//! `arbitrary_precision` feature would change every crate of the workspace
//! (it breaks `#[serde(flatten)]` over numbers, which safetensors uses), so
//! instead a value is validated once and then kept as text: the client's
//! bytes minus insignificant whitespace. Numbers keep every digit, strings
//! keep their escapes, objects keep their key order.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON value held as its exact, minified text.
///
/// Two values are equal when their texts are equal (`1.0` and `1` differ).
/// Serialising it with serde_json writes the text verbatim.
#[derive(Clone)]
pub struct Json(Box<RawValue>);

/// Why some text is not a JSON value.
#[derive(Debug, thiserror::Error)]
#[error("not a JSON value: {0}")]
pub struct InvalidJson(#[from] serde_json::Error);

impl Json {
    /// Validates `text` as one JSON value and keeps it with insignificant
    /// whitespace removed.
    pub fn parse(text: &str) -> Result<Self, InvalidJson> {
        // RawValue checks that the text is exactly one value (trailing data
        // and bad UTF-8 escapes are errors) without converting any number.
        let checked: &RawValue = serde_json::from_str(text)?;
        Ok(Self(RawValue::from_string(minify(checked.get()))?))
    }

    /// Same as [`Json::parse`], for bytes (e.g. a request body).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidJson> {
        let text = std::str::from_utf8(bytes).map_err(|_| {
            InvalidJson(<serde_json::Error as serde::de::Error>::custom(
                "the text is not UTF-8",
            ))
        })?;
        Self::parse(text)
    }

    /// The JSON text of a serialisable value (for values the node itself
    /// writes: what serde_json prints is what is stored).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, InvalidJson> {
        Ok(Self(serde_json::value::to_raw_value(value)?))
    }

    /// The exact text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// Reads the value into a typed structure.
    pub fn parse_into<T: DeserializeOwned>(&self) -> Result<T, InvalidJson> {
        Ok(serde_json::from_str(self.0.get())?)
    }

    /// The value as a `serde_json::Value`, for callers that inspect fields.
    /// Lossy where `Value` is (see the module docs); never use it to store.
    pub fn to_value(&self) -> serde_json::Value {
        // The text was validated on construction, so this cannot fail; a
        // `Null` would only hide a bug in this module.
        serde_json::from_str(self.0.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// Removes whitespace outside strings. JSON's insignificant whitespace is
/// exactly space, tab, line feed and carriage return; inside a string they
/// are kept, and `\"` does not end the string.
fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        // A `Value`'s map keys are strings and its numbers are finite, so
        // serde_json always serialises it.
        Self(
            serde_json::value::to_raw_value(&value).expect("a serde_json::Value always serialises"),
        )
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Json {}

/// Compares by meaning (through `serde_json::Value`), for tests and checks
/// that hold a `json!` literal.
impl PartialEq<serde_json::Value> for Json {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        Json::parse(raw.get()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
