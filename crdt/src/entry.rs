//! Knowledge-base entries and how they are stored inside the Automerge document.
//!
//! Each key of the root `"entries"` map holds exactly one Automerge scalar: a string containing
//! the JSON object `{"v": <value>, "a": <author>, "t": <updated_at_ms>}`. Keeping the whole entry
//! in one scalar means that two replicas writing the same key concurrently produce a conflict on
//! a single register, which Automerge resolves deterministically to one of the two writes — a
//! reader never sees the value of one write with the author or timestamp of the other.

use serde::{Deserialize, Serialize};

use crate::{Error, Json};

/// One entry of the knowledge base, as returned by reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The key the entry is stored under.
    pub key: String,
    /// The JSON value written by the last winning `put`, as its exact text.
    pub value: Json,
    /// Who wrote it (free-form, supplied by the caller of `put`).
    pub author: String,
    /// The writer's wall-clock time in milliseconds since the Unix epoch, as given to `put`.
    /// Informational only: conflicts are resolved by Automerge, not by this timestamp.
    pub updated_at_ms: u64,
}

/// The on-document JSON form of an entry (the key is the map key, so it is not repeated).
#[derive(Serialize, Deserialize)]
struct StoredEntry<'a> {
    v: std::borrow::Cow<'a, Json>,
    a: std::borrow::Cow<'a, str>,
    t: u64,
}

/// Encodes an entry into the string scalar stored in the document.
pub(crate) fn encode(value: &Json, author: &str, now_ms: u64) -> Result<String, Error> {
    let stored = StoredEntry {
        v: std::borrow::Cow::Borrowed(value),
        a: std::borrow::Cow::Borrowed(author),
        t: now_ms,
    };
    serde_json::to_string(&stored).map_err(Error::Encode)
}

/// Decodes the value stored under `key`. `text` is the string scalar found there, or a
/// description of what was found instead; anything but a string holding a valid encoded entry is
/// [`Error::MalformedEntry`].
pub(crate) fn decode(key: &str, text: Result<&str, String>) -> Result<Entry, Error> {
    let malformed = |reason: String| Error::MalformedEntry {
        key: key.to_owned(),
        reason,
    };
    let text =
        text.map_err(|found| malformed(format!("expected a string scalar, found {found}")))?;
    let stored: StoredEntry<'static> =
        serde_json::from_str(text).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    Ok(Entry {
        key: key.to_owned(),
        value: stored.v.into_owned(),
        author: stored.a.into_owned(),
        updated_at_ms: stored.t,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_the_stored_form() {
        let value =
            Json::from(json!({"status": "nominal", "crew": [1, 2, 3], "pi": 3.5, "none": null}));
        let text = encode(&value, "houston", 42).unwrap();
        let entry = decode("k", Ok(&text)).unwrap();
        assert_eq!(
            entry,
            Entry {
                key: "k".into(),
                value,
                author: "houston".into(),
                updated_at_ms: 42
            }
        );
    }

    #[test]
    fn malformed_scalars_are_errors() {
        let cases: [Result<&str, String>; 5] = [
            Err("an int".into()),
            Ok("not json"),
            Ok("{\"v\": 1}"),
            Ok("{\"v\": 1, \"a\": \"x\", \"t\": -1}"),
            Ok("null"),
        ];
        for text in cases {
            let shown = format!("{text:?}");
            assert!(
                matches!(decode("bad", text), Err(Error::MalformedEntry { ref key, .. }) if key == "bad"),
                "{shown} should be malformed"
            );
        }
    }
}
