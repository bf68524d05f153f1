//! Strict decoding of Automerge binary data received from peers or read from disk.
//!
//! Automerge's own `load_incremental` is lenient: it applies every chunk it can parse and
//! silently drops the rest (it only logs a warning), and wholly unparseable input is "loaded" as
//! zero changes. That is the wrong behaviour for data a peer sends us, so everything passes
//! through [`decode_changes`] first, which either returns every change contained in the input or
//! an [`Error`] — and never touches a document.
//!
//! The binary format is a concatenation of chunks, each framed as:
//!
//! ```text
//! magic (4 bytes: 85 6f 4a 83) | checksum (4) | type (1) | body length (uLEB128) | body
//! ```
//!
//! Types: 0 = document (full snapshot), 1 = change, 2 = deflate-compressed change, 3 = bundle.
//! Bundles are experimental upstream and rejected here.

use automerge::{Automerge, Change, LoadOptions, OnPartialLoad, VerificationMode};

use crate::Error;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;
const CHUNK_BUNDLE: u8 = 3;

/// One framed chunk found in a byte string.
struct Frame<'a> {
    offset: usize,
    chunk_type: u8,
    checksum: [u8; 4],
    /// The whole chunk, header included.
    bytes: &'a [u8],
}

/// Splits `data` into its chunks without interpreting the bodies.
fn frames(data: &[u8]) -> Result<Vec<Frame<'_>>, Error> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let rest = &data[offset..];
        let malformed = |reason: &str| Error::MalformedChunk {
            offset,
            reason: reason.to_owned(),
        };
        let (magic, after_magic) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed("truncated header"))?;
        if *magic != MAGIC {
            return Err(malformed("bad magic bytes"));
        }
        let (checksum, after_checksum) = after_magic
            .split_first_chunk::<4>()
            .ok_or_else(|| malformed("truncated header"))?;
        let (&chunk_type, after_type) = after_checksum
            .split_first()
            .ok_or_else(|| malformed("truncated header"))?;
        if chunk_type > CHUNK_BUNDLE {
            return Err(malformed(&format!("unknown chunk type {chunk_type}")));
        }
        let (body_len, len_size) =
            read_uleb128(after_type).ok_or_else(|| malformed("bad length"))?;
        let header_len = 4 + 4 + 1 + len_size;
        let total = usize::try_from(body_len)
            .ok()
            .and_then(|b| b.checked_add(header_len))
            .filter(|&t| t <= rest.len())
            .ok_or_else(|| malformed("truncated body"))?;
        out.push(Frame {
            offset,
            chunk_type,
            checksum: *checksum,
            bytes: &rest[..total],
        });
        offset += total;
    }
    Ok(out)
}

/// Reads an unsigned LEB128 integer, returning it and the number of bytes it used.
/// `None` on truncation or if it does not fit in a `u64`.
fn read_uleb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && low > 1 {
            return None;
        }
        value |= low << shift;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Decodes every change contained in `data` (any concatenation of change, compressed-change and
/// document chunks), verifying checksums. Empty input yields no changes.
///
/// Document chunks are loaded strictly into a scratch document and expanded into their changes.
pub(crate) fn decode_changes(data: &[u8]) -> Result<Vec<Change>, Error> {
    let mut changes = Vec::new();
    decode_into(data, Some(&mut changes))?;
    Ok(changes)
}

/// Checks `data` exactly as strictly as [`decode_changes`] does, without keeping the changes:
/// a document chunk is loaded and verified but not expanded into its changes (rebuilding every
/// change of a document costs more than loading it), for callers that hand the bytes to
/// Automerge afterwards.
pub(crate) fn validate(data: &[u8]) -> Result<(), Error> {
    decode_into(data, None)
}

fn decode_into(data: &[u8], mut changes: Option<&mut Vec<Change>>) -> Result<(), Error> {
    for frame in frames(data)? {
        match frame.chunk_type {
            CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE => {
                let change = Change::from_bytes(frame.bytes.to_vec()).map_err(|source| {
                    Error::InvalidChange {
                        offset: frame.offset,
                        source: Box::new(source),
                    }
                })?;
                // `Change::from_bytes` does not look at the header checksum; it is the first
                // four bytes of the change hash (also for compressed changes).
                if change.hash().0[..4] != frame.checksum {
                    return Err(Error::ChecksumMismatch {
                        offset: frame.offset,
                    });
                }
                if let Some(changes) = changes.as_deref_mut() {
                    changes.push(change);
                }
            }
            CHUNK_DOCUMENT => {
                // The default OnPartialLoad is already Error; spelled out because the strictness
                // is the point. Checking the heads also verifies the checksum and contents.
                let options = LoadOptions::new()
                    .on_partial_load(OnPartialLoad::Error)
                    .verification_mode(VerificationMode::Check);
                let doc = Automerge::load_with_options(frame.bytes, options).map_err(|source| {
                    Error::InvalidDocument {
                        offset: frame.offset,
                        source: Box::new(source),
                    }
                })?;
                if let Some(changes) = changes.as_deref_mut() {
                    changes.extend(doc.get_changes(&[]));
                }
            }
            other => {
                return Err(Error::UnsupportedChunk {
                    offset: frame.offset,
                    chunk_type: other,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    fn sample_doc() -> AutoCommit {
        let mut doc = AutoCommit::new().with_actor(automerge::ActorId::from([1u8; 16]));
        doc.put(ROOT, "a", 1_i64).unwrap();
        doc.commit();
        doc.put(ROOT, "b", "two").unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn uleb128_edge_cases() {
        assert_eq!(read_uleb128(&[0x00]), Some((0, 1)));
        assert_eq!(read_uleb128(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
        assert_eq!(read_uleb128(&[0x80]), None);
        assert_eq!(read_uleb128(&[]), None);
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read_uleb128(&max), Some((u64::MAX, 10)));
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read_uleb128(&overflow), None);
    }

    #[test]
    fn decodes_incremental_and_document_chunks() {
        let mut doc = sample_doc();
        let incremental = doc.save_incremental();
        assert_eq!(decode_changes(&incremental).unwrap().len(), 2);
        let snapshot = doc.save();
        assert_eq!(decode_changes(&snapshot).unwrap().len(), 2);
        let mut both = snapshot.clone();
        both.extend_from_slice(&incremental);
        assert_eq!(decode_changes(&both).unwrap().len(), 4);
        assert!(decode_changes(&[]).unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage_truncation_and_corruption() {
        let mut doc = sample_doc();
        let good = doc.save_incremental();
        assert!(matches!(
            decode_changes(b"hello world"),
            Err(Error::MalformedChunk { offset: 0, .. })
        ));
        let truncated = &good[..good.len() - 1];
        assert!(decode_changes(truncated).is_err());
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0x85, 0x6f]);
        assert!(matches!(
            decode_changes(&trailing),
            Err(Error::MalformedChunk { .. })
        ));
        let mut bad_checksum = good.clone();
        bad_checksum[4] ^= 0xff;
        assert!(matches!(
            decode_changes(&bad_checksum),
            Err(Error::ChecksumMismatch { offset: 0 })
        ));
        let mut bad_body = good;
        let last = bad_body.len() - 1;
        bad_body[last] ^= 0x55;
        assert!(decode_changes(&bad_body).is_err());
        let mut bad_doc = doc.save();
        let mid = bad_doc.len() / 2;
        bad_doc[mid] ^= 0x55;
        assert!(decode_changes(&bad_doc).is_err());
    }

    #[test]
    fn rejects_unknown_and_bundle_chunk_types() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0, 9, 0]);
        assert!(matches!(
            decode_changes(&bytes),
            Err(Error::MalformedChunk { .. })
        ));
        bytes[8] = CHUNK_BUNDLE;
        assert!(matches!(
            decode_changes(&bytes),
            Err(Error::UnsupportedChunk { chunk_type: 3, .. })
        ));
    }
}
