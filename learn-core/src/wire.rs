//! serde adapters for byte fields.
//!
//! serde treats `Vec<u8>` and `[u8; N]` as sequences of numbers, which
//! postcard encodes byte by byte through a visitor — slow for the megabytes
//! of a weight chunk, and unsupported for arrays longer than 32. These
//! adapters serialize them as byte strings (one length prefix and a copy) and
//! still accept a sequence when deserializing, so self-describing formats
//! such as JSON work too.

use std::fmt;

use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

/// `#[serde(with = "crate::wire::byte_vec")]` for `Vec<u8>`.
pub(crate) mod byte_vec {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// `#[serde(with = "crate::wire::byte_array")]` for `[u8; N]`.
pub(crate) mod byte_array {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let bytes = d.deserialize_bytes(BytesVisitor)?;
        let len = bytes.len();
        bytes
            .try_into()
            .map_err(|_| D::Error::invalid_length(len, &"a fixed number of bytes"))
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Do not trust a size hint from the peer beyond a modest bound.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(with = "super::byte_array")]
        sig: [u8; 64],
        #[serde(with = "super::byte_vec")]
        data: Vec<u8>,
    }

    #[test]
    fn byte_fields_are_compact_in_postcard_and_readable_in_json() {
        let s = Sample {
            sig: [7; 64],
            data: vec![1, 2, 3],
        };
        let bytes = postcard::to_stdvec(&s).unwrap();
        // One length byte per field plus the bytes themselves.
        assert_eq!(bytes.len(), 1 + 64 + 1 + 3);
        assert_eq!(postcard::from_bytes::<Sample>(&bytes).unwrap(), s);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Sample>(&json).unwrap(), s);
    }

    #[test]
    fn wrong_array_lengths_are_errors() {
        let mut bytes = vec![63];
        bytes.extend([0u8; 63]);
        bytes.push(0);
        assert!(postcard::from_bytes::<Sample>(&bytes).is_err());
    }
}
