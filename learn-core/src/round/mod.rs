//! One round of a campaign: which updates count, and what they add up to.
//!
//! A [`Collector`] is built from the round's [`Config`] (campaign, round
//! number, hash of the base model, model size, the participants' keys and a
//! [`NormBound`]). Updates are offered to it as they arrive, in any order and
//! from any relay; each is accepted or refused with a [`Rejection`] that says
//! why. The caller closes the round — when [`Collector::is_complete`] says
//! every participant has spoken, or at a deadline it keeps itself (the
//! collector has no clock) — and calls [`Collector::aggregate`].
//!
//! # The rules
//!
//! Each participant gets **one signed statement per round**. Checks run in
//! this order, cheapest first:
//!
//! 0. lookups: an author already excluded is refused ([`Rejection::Excluded`]),
//!    and so is a header equal to the author's statement
//!    ([`Rejection::Duplicate`]) — a relayed copy costs no hashing;
//! 1. the author is a participant; campaign, round and base hash match; the
//!    header and the weights have the expected number of parameters;
//! 2. the signature verifies, and the weights hash to the signed hash;
//! 3. a *different* signed header from an author who already made a
//!    statement is equivocation: both are kept as [`Evidence`], which any
//!    node can check, and the author is excluded from the round;
//! 4. the weights are finite and within the norm bound.
//!
//! A statement that passes 1–2 counts as the author's statement even if it
//! fails 4, so an author cannot replace a refused update with another one.
//!
//! The outcome depends only on the *set* of accepted updates:
//! [`Collector::accepted_digest`] names that set, and nodes whose digests
//! agree hold byte-identical models (see [`crate::aggregate`]). An
//! equivocator that shows different nodes different updates makes their
//! sets differ — the digests show it — until its [`Evidence`] reaches them
//! ([`Collector::offer_evidence`]) and every node excludes it.

mod collector;

pub use collector::{Accepted, Collector, Outcome};

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::digest::{AuthorKey, CampaignId, Digest};
use crate::update::SignedHeader;

/// What a round expects of the updates offered to it.
#[derive(Clone, Debug)]
pub struct Config {
    /// The campaign.
    pub campaign: CampaignId,
    /// The round number.
    pub round: u32,
    /// Hash of the global model this round trains from.
    pub base_hash: Digest,
    /// Number of parameters of the model.
    pub num_params: u32,
    /// ed25519 keys of the participants of this round.
    pub participants: BTreeSet<AuthorKey>,
    /// The bound on an update's size.
    pub norm_bound: NormBound,
}

/// A bound on how large an update may be, in the Euclidean norm.
#[derive(Clone)]
pub enum NormBound {
    /// No bound (the weights must still be finite).
    Unbounded,
    /// `‖weights‖₂ ≤ max`.
    Weights(f64),
    /// `‖weights − base‖₂ ≤ max`: how far local training may move the model.
    /// `base` must be the round's base model (its hash is checked).
    Delta {
        /// The round's base model.
        base: Arc<[f32]>,
        /// The largest distance allowed.
        max: f64,
    },
}

impl std::fmt::Debug for NormBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NormBound::Unbounded => f.write_str("Unbounded"),
            NormBound::Weights(max) => f.debug_tuple("Weights").field(max).finish(),
            NormBound::Delta { base, max } => f
                .debug_struct("Delta")
                .field("base", &format_args!("[{} × f32]", base.len()))
                .field("max", max)
                .finish(),
        }
    }
}

/// Why a round's configuration is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The base model given with [`NormBound::Delta`] has another size.
    #[error("base model has {actual} parameters, the round expects {expected}")]
    BaseShape {
        /// `num_params` of the round.
        expected: u32,
        /// Length of the base model given.
        actual: usize,
    },
    /// The base model given with [`NormBound::Delta`] does not hash to
    /// `base_hash`.
    #[error("base model does not match the round's base hash")]
    BaseHash,
    /// The norm bound is negative or NaN.
    #[error("norm bound {0} is not a non-negative number")]
    BadBound(f64),
}

/// Why a [`Collector`] refused an update or a piece of evidence.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The author is not a participant of the round.
    #[error("author is not a participant")]
    NotParticipant,
    /// The update belongs to another campaign.
    #[error("update for another campaign")]
    WrongCampaign,
    /// The update answers another round (a caller may keep a later one for
    /// its round).
    #[error("update for round {got}, this is round {expected}")]
    WrongRound {
        /// This round.
        expected: u32,
        /// The update's round.
        got: u32,
    },
    /// The update was trained from another base model.
    #[error("update trained from another base model")]
    WrongBase,
    /// The header or the weights have the wrong number of parameters.
    #[error("update has {got} parameters, the model has {expected}")]
    WrongShape {
        /// The model's size.
        expected: u32,
        /// The header's `num_params`, or the number of weights carried.
        got: u64,
    },
    /// The signature does not verify (or the key is not a valid ed25519 key).
    #[error("bad signature")]
    BadSignature,
    /// The weights do not hash to the signed weights hash.
    #[error("weights do not match their signed hash")]
    WeightsMismatch,
    /// The author was caught equivocating earlier in this round.
    #[error("author is excluded from this round for equivocation")]
    Excluded,
    /// The author's statement for this round was already received (it may
    /// have been refused for its content: it still counts).
    #[error("duplicate update")]
    Duplicate,
    /// The author signed a different update for this round before: both are
    /// kept as [`Evidence`] and the author is excluded from the round.
    #[error("equivocation: a different update from this author for this round")]
    Equivocation,
    /// A weight is NaN or infinite.
    #[error("update holds a non-finite value")]
    NonFinite,
    /// The update exceeds the round's norm bound.
    #[error("update norm {norm} exceeds the bound {max}")]
    NormTooLarge {
        /// The update's norm (as bounded: of the weights or of the delta).
        norm: f64,
        /// The bound.
        max: f64,
    },
    /// Evidence offered to the collector does not prove equivocation (the
    /// headers are equal, or their authors, campaigns or rounds differ).
    #[error("evidence does not show two different statements by one author for this round")]
    NotEquivocation,
}

impl Rejection {
    /// The rejection's snake-case name, as campaigns count them
    /// (`rejections: {"not_participant": 1}`) and the API reports them.
    pub fn name(&self) -> &'static str {
        match self {
            Rejection::NotParticipant => "not_participant",
            Rejection::WrongCampaign => "wrong_campaign",
            Rejection::WrongRound { .. } => "wrong_round",
            Rejection::WrongBase => "wrong_base",
            Rejection::WrongShape { .. } => "wrong_shape",
            Rejection::BadSignature => "bad_signature",
            Rejection::WeightsMismatch => "weights_mismatch",
            Rejection::Excluded => "excluded",
            Rejection::Duplicate => "duplicate",
            Rejection::Equivocation => "equivocation",
            Rejection::NonFinite => "non_finite",
            Rejection::NormTooLarge { .. } => "norm_too_large",
            Rejection::NotEquivocation => "not_equivocation",
        }
    }
}

/// Proof that an author signed two different updates for one round: two
/// signed headers, checkable by anyone who knows the author's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The statement received first.
    pub first: SignedHeader,
    /// The conflicting statement.
    pub second: SignedHeader,
}

impl Evidence {
    /// The equivocating author.
    pub fn author(&self) -> AuthorKey {
        self.first.author
    }

    /// Checks that this proves equivocation in (`campaign`, `round`): both
    /// signatures verify, the author is the same, the headers differ.
    pub fn verify(&self, campaign: CampaignId, round: u32) -> Result<(), Rejection> {
        let (a, b) = (&self.first, &self.second);
        if a.author != b.author || a.header == b.header {
            return Err(Rejection::NotEquivocation);
        }
        for s in [a, b] {
            if s.header.campaign != campaign {
                return Err(Rejection::WrongCampaign);
            }
            if s.header.round != round {
                return Err(Rejection::WrongRound {
                    expected: round,
                    got: s.header.round,
                });
            }
        }
        a.verify().map_err(|_| Rejection::BadSignature)?;
        b.verify().map_err(|_| Rejection::BadSignature)
    }
}

#[cfg(test)]
mod tests;
