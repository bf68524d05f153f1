//! Signed weight updates: what a participant sends after each local round.
//!
//! A participant trains from the round's global model (named by its hash,
//! `base_hash`) and signs an [`UpdateHeader`] with its ed25519 key. The
//! header binds the campaign, the round, the base model, the claimed sample
//! count and the hash of the new weights; the weights themselves travel next
//! to the header and are bound to it by [`model_hash`]. So any node — not
//! only the one that received the update first — can check who said what.
//!
//! # Signed bytes
//!
//! `b"mc-fl-update/1" ‖ postcard(header)`. The domain tag keeps a signature
//! over an update from ever being valid for another kind of message signed
//! with the same key. Verification is `verify_strict` (no malleable
//! signatures, no small-order keys).
//!
//! # Wire form
//!
//! ```text
//! +---------+------------------+-----------+--------------+--------------------------+
//! | version | postcard(header) | author 32 | signature 64 | weights: 4·num_params LE |
//! +---------+------------------+-----------+--------------+--------------------------+
//! ```
//!
//! The weights are raw little-endian `f32`s, not a serde sequence, so 4 MB of
//! weights decode with one bounds check and a conversion loop. [`decode`]
//! checks the size limit before anything else and the exact length before it
//! allocates, and gives an [`UpdateError`] — never a panic — for any input.
//!
//! [`decode`]: SignedUpdate::decode

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::digest::{AuthorKey, CampaignId, Digest, model_hash};

/// The version byte this build writes and reads.
pub const UPDATE_WIRE_VERSION: u8 = 1;

/// Prefix of the bytes a participant signs (see the module doc).
pub const SIGNING_DOMAIN: &[u8] = b"mc-fl-update/1";

/// What a participant signs about its update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UpdateHeader {
    /// The campaign the update belongs to.
    pub campaign: CampaignId,
    /// The round it answers.
    pub round: u32,
    /// Hash of the global model it was trained from.
    pub base_hash: Digest,
    /// How many local samples it was trained on (FedAvg's weight).
    pub sample_count: u64,
    /// [`model_hash`] of the update's weights.
    pub weights_hash: Digest,
    /// How many parameters the weights have.
    pub num_params: u32,
}

impl UpdateHeader {
    /// The bytes that are signed: [`SIGNING_DOMAIN`] followed by the
    /// header's postcard encoding.
    pub fn signing_bytes(&self) -> Vec<u8> {
        postcard::to_extend(self, SIGNING_DOMAIN.to_vec())
            .expect("postcard writes a fixed-shape header to a Vec")
    }
}

/// A header with its author and signature, without the weights: enough to
/// prove what an author signed (see `round::Evidence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedHeader {
    /// What was signed.
    pub header: UpdateHeader,
    /// The signer's ed25519 public key.
    pub author: AuthorKey,
    /// The ed25519 signature over [`UpdateHeader::signing_bytes`].
    #[serde(with = "crate::wire::byte_array")]
    pub signature: [u8; 64],
}

impl SignedHeader {
    /// Checks the signature (strict ed25519 verification).
    pub fn verify(&self) -> Result<(), UpdateError> {
        let key = VerifyingKey::from_bytes(&self.author).map_err(|_| UpdateError::BadSignature)?;
        key.verify_strict(
            &self.header.signing_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| UpdateError::BadSignature)
    }
}

/// A participant's update for one round: its signed header and its weights.
#[derive(Clone, PartialEq)]
pub struct SignedUpdate {
    /// What the author signed.
    pub header: UpdateHeader,
    /// The author's ed25519 public key.
    pub author: AuthorKey,
    /// The ed25519 signature over [`UpdateHeader::signing_bytes`].
    pub signature: [u8; 64],
    /// The model weights, flattened in the campaign's parameter order.
    pub weights: Vec<f32>,
}

/// Why an update could not be made, decoded or verified.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The input was empty: not even a version byte.
    #[error("empty update")]
    Empty,
    /// The encoded update is larger than the receiver's limit.
    #[error("update of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the input.
        len: usize,
        /// The limit it broke.
        max: usize,
    },
    /// The version byte names an encoding this build does not speak.
    #[error("unsupported update version {0} (this build speaks {UPDATE_WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The header is not a valid postcard encoding.
    #[error("malformed update header: {0}")]
    Malformed(#[from] postcard::Error),
    /// The input ended inside the author key or the signature.
    #[error("update truncated before its signature ended")]
    Truncated,
    /// The bytes after the signature are not exactly `4 · num_params` long.
    #[error("update carries {actual} bytes of weights, its header announces {expected}")]
    LengthMismatch {
        /// `4 · num_params` from the header.
        expected: u64,
        /// What followed the signature.
        actual: u64,
    },
    /// A model with more than `u32::MAX` parameters cannot be signed.
    #[error("{0} parameters exceed the limit of u32::MAX")]
    TooManyParams(usize),
    /// The author key is not a valid ed25519 key, or the signature does not
    /// verify against it.
    #[error("bad signature")]
    BadSignature,
    /// The number of weights differs from the signed `num_params`.
    #[error("update has {actual} weights, its header announces {expected}")]
    ShapeMismatch {
        /// `num_params` from the header.
        expected: u32,
        /// The number of weights carried.
        actual: usize,
    },
    /// The weights do not hash to the signed `weights_hash`.
    #[error("weights do not match the signed weights hash")]
    WeightsMismatch,
}

/// Signs `weights` as `key`'s update for `round` of `campaign`, trained from
/// the model whose hash is `base_hash` on `sample_count` samples.
pub fn sign(
    key: &SigningKey,
    campaign: CampaignId,
    round: u32,
    base_hash: Digest,
    sample_count: u64,
    weights: Vec<f32>,
) -> Result<SignedUpdate, UpdateError> {
    let num_params =
        u32::try_from(weights.len()).map_err(|_| UpdateError::TooManyParams(weights.len()))?;
    let header = UpdateHeader {
        campaign,
        round,
        base_hash,
        sample_count,
        weights_hash: model_hash(&weights),
        num_params,
    };
    Ok(SignedUpdate {
        header,
        author: key.verifying_key().to_bytes(),
        signature: key.sign(&header.signing_bytes()).to_bytes(),
        weights,
    })
}

impl SignedUpdate {
    /// The header, author and signature, without the weights.
    pub fn signed_header(&self) -> SignedHeader {
        SignedHeader {
            header: self.header,
            author: self.author,
            signature: self.signature,
        }
    }

    /// Checks the signature over the header (cheap: about 50 µs).
    pub fn verify_signature(&self) -> Result<(), UpdateError> {
        self.signed_header().verify()
    }

    /// Checks that the weights are the ones the header names: their count and
    /// their hash (linear in the model size).
    pub fn verify_weights(&self) -> Result<(), UpdateError> {
        if self.weights.len() != self.header.num_params as usize {
            return Err(UpdateError::ShapeMismatch {
                expected: self.header.num_params,
                actual: self.weights.len(),
            });
        }
        if model_hash(&self.weights) != self.header.weights_hash {
            return Err(UpdateError::WeightsMismatch);
        }
        Ok(())
    }

    /// [`verify_signature`](Self::verify_signature) then
    /// [`verify_weights`](Self::verify_weights).
    pub fn verify(&self) -> Result<(), UpdateError> {
        self.verify_signature()?;
        self.verify_weights()
    }

    /// The size of [`encode`](Self::encode)'s output.
    pub fn encoded_len(&self) -> usize {
        let header = postcard::experimental::serialized_size(&self.header)
            .expect("postcard sizes a fixed-shape header");
        1 + header + 32 + 64 + 4 * self.weights.len()
    }

    /// Encodes the update in its wire form (see the module doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(UPDATE_WIRE_VERSION);
        out = postcard::to_extend(&self.header, out)
            .expect("postcard writes a fixed-shape header to a Vec");
        out.extend_from_slice(&self.author);
        out.extend_from_slice(&self.signature);
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Decodes an update of at most `max` bytes. Checks the framing only:
    /// call [`verify`](Self::verify) (or offer it to a `round::Collector`)
    /// before trusting it.
    pub fn decode(bytes: &[u8], max: usize) -> Result<Self, UpdateError> {
        if bytes.len() > max {
            return Err(UpdateError::TooLarge {
                len: bytes.len(),
                max,
            });
        }
        let (&version, rest) = bytes.split_first().ok_or(UpdateError::Empty)?;
        if version != UPDATE_WIRE_VERSION {
            return Err(UpdateError::UnsupportedVersion(version));
        }
        let (header, rest) = postcard::take_from_bytes::<UpdateHeader>(rest)?;
        let (author, rest) = rest
            .split_first_chunk::<32>()
            .ok_or(UpdateError::Truncated)?;
        let (signature, rest) = rest
            .split_first_chunk::<64>()
            .ok_or(UpdateError::Truncated)?;
        let expected = 4 * u64::from(header.num_params);
        if rest.len() as u64 != expected {
            return Err(UpdateError::LengthMismatch {
                expected,
                actual: rest.len() as u64,
            });
        }
        let weights = rest
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Self {
            header,
            author: *author,
            signature: *signature,
            weights,
        })
    }
}

impl fmt::Debug for SignedUpdate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print megabytes of weights into a log.
        f.debug_struct("SignedUpdate")
            .field("header", &self.header)
            .field("author", &crate::digest::ShortHex(&self.author))
            .field("weights", &format_args!("[{} × f32]", self.weights.len()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{SeedableRng, rngs::ChaCha8Rng};

    fn key(seed: u64) -> SigningKey {
        SigningKey::generate(&mut ChaCha8Rng::seed_from_u64(seed))
    }

    fn sample(weights: Vec<f32>) -> SignedUpdate {
        sign(
            &key(1),
            CampaignId::from_name("test"),
            3,
            Digest([9; 32]),
            120,
            weights,
        )
        .unwrap()
    }

    #[test]
    fn signed_updates_verify_and_bind_every_field() {
        let update = sample(vec![0.5, -1.25, 3.0]);
        update.verify().unwrap();
        assert_eq!(update.header.num_params, 3);
        assert_eq!(update.header.weights_hash, model_hash(&update.weights));
        assert_eq!(update.author, key(1).verifying_key().to_bytes());

        let tampered: [fn(&mut SignedUpdate); 6] = [
            |u| u.header.campaign = CampaignId::from_name("other"),
            |u| u.header.round += 1,
            |u| u.header.base_hash = Digest([8; 32]),
            |u| u.header.sample_count *= 10,
            |u| u.header.weights_hash = Digest([0; 32]),
            |u| u.author = key(2).verifying_key().to_bytes(),
        ];
        for tamper in tampered {
            let mut u = update.clone();
            tamper(&mut u);
            assert!(matches!(
                u.verify_signature(),
                Err(UpdateError::BadSignature)
            ));
        }
        let mut u = update.clone();
        u.signature[10] ^= 1;
        assert!(matches!(u.verify(), Err(UpdateError::BadSignature)));
        // An author key that is not a curve point.
        let mut u = update.clone();
        u.author = [0xff; 32];
        assert!(matches!(u.verify(), Err(UpdateError::BadSignature)));
    }

    #[test]
    fn weights_are_bound_by_their_hash_and_count() {
        let update = sample(vec![0.5, -1.25, 3.0]);
        let mut u = update.clone();
        u.weights[1] = 7.0;
        u.verify_signature().unwrap();
        assert!(matches!(u.verify(), Err(UpdateError::WeightsMismatch)));
        let mut u = update;
        u.weights.push(0.0);
        assert!(matches!(
            u.verify(),
            Err(UpdateError::ShapeMismatch {
                expected: 3,
                actual: 4
            })
        ));
    }

    #[test]
    fn the_signed_bytes_are_domain_separated() {
        let update = sample(vec![1.0]);
        let bytes = update.header.signing_bytes();
        assert!(bytes.starts_with(SIGNING_DOMAIN));
        // A signature over the bare header (no domain tag) is not accepted.
        let bare = postcard::to_stdvec(&update.header).unwrap();
        let mut u = update.clone();
        u.signature = key(1).sign(&bare).to_bytes();
        assert!(matches!(u.verify(), Err(UpdateError::BadSignature)));
    }

    #[test]
    fn updates_round_trip_through_their_wire_form() {
        let update = sample((0..1000).map(|i| i as f32 * 0.25 - 100.0).collect());
        let bytes = update.encode();
        assert_eq!(bytes.len(), update.encoded_len());
        assert_eq!(bytes[0], UPDATE_WIRE_VERSION);
        let back = SignedUpdate::decode(&bytes, bytes.len()).unwrap();
        assert_eq!(back, update);
        back.verify().unwrap();
        assert!(format!("{back:?}").contains("[1000 × f32]"));
    }

    #[test]
    fn bad_wire_forms_give_typed_errors() {
        let bytes = sample(vec![1.0, 2.0]).encode();
        let len = bytes.len();
        assert!(matches!(
            SignedUpdate::decode(&[], 10),
            Err(UpdateError::Empty)
        ));
        assert!(matches!(
            SignedUpdate::decode(&bytes, len - 1),
            Err(UpdateError::TooLarge { .. })
        ));
        let mut v = bytes.clone();
        v[0] = 2;
        assert!(matches!(
            SignedUpdate::decode(&v, len),
            Err(UpdateError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            SignedUpdate::decode(&bytes[..20], len),
            Err(UpdateError::Malformed(_))
        ));
        // Cut inside the signature: the header parses, the signature does not fit.
        assert!(matches!(
            SignedUpdate::decode(&bytes[..len - 8 - 10], len),
            Err(UpdateError::Truncated)
        ));
        assert!(matches!(
            SignedUpdate::decode(&bytes[..len - 1], len),
            Err(UpdateError::LengthMismatch {
                expected: 8,
                actual: 7
            })
        ));
        let mut v = bytes.clone();
        v.push(0);
        assert!(matches!(
            SignedUpdate::decode(&v, len + 1),
            Err(UpdateError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn a_huge_announced_length_allocates_nothing() {
        let mut u = sample(vec![]);
        u.header.num_params = u32::MAX;
        let bytes = u.encode();
        assert!(matches!(
            SignedUpdate::decode(&bytes, 1 << 20),
            Err(UpdateError::LengthMismatch { expected, actual: 0 }) if expected == 4 * u64::from(u32::MAX)
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedUpdate::decode(&bytes, 512);
            let mut framed = vec![UPDATE_WIRE_VERSION];
            framed.extend_from_slice(&bytes);
            let _ = SignedUpdate::decode(&framed, 1024);
        }

        #[test]
        fn any_update_round_trips(
            weights in prop::collection::vec(any::<f32>(), 0..64),
            round in any::<u32>(),
            samples in any::<u64>(),
        ) {
            let u = sign(&key(5), CampaignId([1; 16]), round, Digest([2; 32]), samples, weights).unwrap();
            let bytes = u.encode();
            let back = SignedUpdate::decode(&bytes, usize::MAX).unwrap();
            // Compare bits: NaN weights must survive unchanged too.
            prop_assert_eq!(back.encode(), bytes);
            prop_assert!(back.verify().is_ok());
        }
    }
}
