//! Splitting an encoded update into transport-sized chunks, and putting it
//! back together with bounded memory.
//!
//! Every [`Chunk`] names its update by `update_id`, the BLAKE3 digest of the
//! whole encoded update, and carries its `index`, the `total` number of
//! chunks and the update's `total_len`. A [`Reassembler`] keeps partial
//! updates per sender (so one peer's chunks can never corrupt another's copy
//! of the same update), reserves `total_len` bytes of the sender's budget when
//! a new update starts, rejects chunks that contradict what it already holds,
//! and yields the bytes once every chunk is in and their digest equals
//! `update_id`.
//!
//! This file holds the chunk format, [`split`] and the errors; the
//! `reassembler` file holds [`Reassembler`] and its [`Limits`].

mod reassembler;

pub use reassembler::{Limits, Reassembler};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// An upper bound on the bytes a chunk's postcard encoding adds to its data
/// (32 id + 5 index + 5 total + 10 length + 10 data length = 62).
pub const CHUNK_OVERHEAD: usize = 64;

/// One piece of an encoded update.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// BLAKE3 digest of the whole encoded update.
    pub update_id: Digest,
    /// Position of this chunk, from 0.
    pub index: u32,
    /// Number of chunks of the update (at least 1).
    pub total: u32,
    /// Length of the whole encoded update in bytes.
    pub total_len: u64,
    /// This chunk's bytes.
    #[serde(with = "crate::wire::byte_vec")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("update_id", &self.update_id)
            .field("index", &self.index)
            .field("total", &self.total)
            .field("total_len", &self.total_len)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Why chunks could not be made, decoded or reassembled.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The chunk size asked of [`split`] leaves no room for data.
    #[error("chunks of {max} bytes leave no room for data (overhead {CHUNK_OVERHEAD})")]
    ChunkTooSmall {
        /// The size asked for.
        max: usize,
    },
    /// The input would need more than `u32::MAX` chunks.
    #[error("input needs more than u32::MAX chunks")]
    TooManyChunks,
    /// An encoded chunk, or the update it announces, exceeds the limit.
    #[error("{len} bytes exceed the limit of {max} bytes")]
    TooLarge {
        /// The size found or announced.
        len: u64,
        /// The limit it broke.
        max: u64,
    },
    /// The bytes are not a valid chunk encoding.
    #[error("malformed chunk: {0}")]
    Malformed(#[from] postcard::Error),
    /// A valid chunk was followed by extra bytes.
    #[error("{0} trailing bytes after the chunk")]
    TrailingBytes(usize),
    /// The chunk contradicts itself or the chunks already received for its
    /// update (index out of range, other totals, other data at an index,
    /// more bytes than announced, an empty chunk).
    #[error("inconsistent chunk: {0}")]
    Inconsistent(&'static str),
    /// Starting this update would exceed the sender's budget of pending
    /// updates or bytes.
    #[error("sender over budget: {pending} pending updates, {bytes} bytes reserved")]
    OverBudget {
        /// Updates the sender already has pending.
        pending: usize,
        /// Bytes already reserved for the sender.
        bytes: u64,
    },
    /// All chunks arrived but their bytes do not hash to the update id; the
    /// partial update is dropped.
    #[error("reassembled bytes do not match the update id")]
    HashMismatch,
}

/// Splits `bytes` into chunks whose encodings are at most `max_chunk_bytes`
/// long. An empty input gives one empty chunk.
pub fn split(bytes: &[u8], max_chunk_bytes: usize) -> Result<Vec<Chunk>, ChunkError> {
    let data_len = max_chunk_bytes
        .checked_sub(CHUNK_OVERHEAD)
        .filter(|&d| d > 0)
        .ok_or(ChunkError::ChunkTooSmall {
            max: max_chunk_bytes,
        })?;
    let total = u32::try_from(bytes.len().div_ceil(data_len).max(1))
        .map_err(|_| ChunkError::TooManyChunks)?;
    let update_id = Digest::of(bytes);
    let mut pieces: Vec<&[u8]> = bytes.chunks(data_len).collect();
    if pieces.is_empty() {
        pieces.push(&[]);
    }
    Ok(pieces
        .into_iter()
        .zip(0..)
        .map(|(data, index)| Chunk {
            update_id,
            index,
            total,
            total_len: bytes.len() as u64,
            data: data.to_vec(),
        })
        .collect())
}

impl Chunk {
    /// The chunk's postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("postcard writes a chunk to a Vec")
    }

    /// Decodes a chunk of at most `max` bytes.
    pub fn decode(bytes: &[u8], max: usize) -> Result<Self, ChunkError> {
        if bytes.len() > max {
            return Err(ChunkError::TooLarge {
                len: bytes.len() as u64,
                max: max as u64,
            });
        }
        let (chunk, rest) = postcard::take_from_bytes::<Chunk>(bytes)?;
        if !rest.is_empty() {
            return Err(ChunkError::TrailingBytes(rest.len()));
        }
        Ok(chunk)
    }
}

/// Checks a complete update's length and digest.
pub(crate) fn finish(
    update_id: Digest,
    total_len: u64,
    bytes: Vec<u8>,
) -> Result<Vec<u8>, ChunkError> {
    if bytes.len() as u64 != total_len {
        return Err(ChunkError::Inconsistent("fewer bytes than announced"));
    }
    if Digest::of(&bytes) != update_id {
        return Err(ChunkError::HashMismatch);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
