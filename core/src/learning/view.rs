//! What a node shows of a campaign: its state, its rounds, and why a
//! request was refused.

use super::*;

/// Where a campaign stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Rounds are running.
    Running,
    /// Every round closed.
    Completed,
    /// This node is not a participant; it only relays the declaration.
    Observing,
}

/// One closed round, as recorded by this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// Round number (0 = moments).
    pub round: u32,
    /// Accepted updates.
    pub accepted: usize,
    /// Participants that sent nothing in time.
    pub missing: usize,
    /// Participants excluded for equivocation.
    pub excluded: usize,
    /// Digest of the accepted set (hex).
    pub accepted_digest: String,
    /// Hash of the resulting model (hex).
    pub model_hash: String,
    /// `complete` (everyone reported) or `deadline`.
    pub closed_by: ClosedBy,
    /// Round duration on this node, ms.
    pub duration_ms: Millis,
    /// Set when aggregation failed and the model was kept.
    pub error: Option<String>,
}

/// How a round closed. Stored and shown as the strings `complete` and
/// `deadline` (the form of records written before it was an enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    /// Every participant's update arrived.
    Complete,
    /// The deadline passed first.
    Deadline,
}

impl ClosedBy {
    /// `complete` or `deadline`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClosedBy::Complete => "complete",
            ClosedBy::Deadline => "deadline",
        }
    }
}

impl std::fmt::Display for ClosedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ClosedBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ClosedBy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "complete" => Ok(ClosedBy::Complete),
            "deadline" => Ok(ClosedBy::Deadline),
            other => Err(serde::de::Error::custom(format!(
                "closed_by {other:?} is neither complete nor deadline"
            ))),
        }
    }
}

/// A campaign as `GET /v1/campaigns/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignView {
    /// Hex id.
    pub id: String,
    /// This node's state for it.
    pub state: CampaignState,
    /// The round in progress (or the last one when completed).
    pub current_round: u32,
    /// Rounds in total, the moments round included.
    pub total_rounds: u32,
    /// The declaration.
    pub spec: CampaignSpec,
    /// Closed rounds.
    pub rounds: Vec<RoundRecord>,
    /// Updates refused, by reason.
    pub rejections: BTreeMap<String, u64>,
    /// Equivocation evidence held (author keys, hex).
    pub equivocators: Vec<String>,
    /// Hash of the current global model (hex), once there is one.
    pub model_hash: Option<String>,
    /// The median sample count accepted in the moments round, once it
    /// closed: it sets the local steps.
    pub reference_count: Option<u64>,
    /// Local optimiser steps every participant runs per model round, once
    /// the moments round closed.
    pub local_steps: Option<u32>,
    /// The learning rate of the current model round, once there is one.
    pub round_learning_rate: Option<f64>,
    /// Times this node caught up with the campaign's majority (since it
    /// started).
    pub caught_up: Vec<CatchUpRecord>,
}

/// Why a campaign request or a submitted update was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    /// The request itself is invalid.
    #[error("invalid campaign: {0}")]
    Invalid(String),
    /// No campaign has this id on this node.
    #[error("no campaign with id {0}")]
    UnknownCampaign(String),
    /// The update could not be decoded.
    #[error("malformed update: {0}")]
    Malformed(String),
    /// The update belongs to another campaign than the one addressed.
    #[error("the update is for campaign {update}, not {addressed}")]
    WrongCampaign {
        /// The campaign in the request's path.
        addressed: String,
        /// The campaign the update was signed for.
        update: String,
    },
    /// The update was refused (by the round's collector, or for its round
    /// or base).
    #[error("update rejected: {0}")]
    Rejected(Rejection),
    /// A campaign state offered for catch-up was refused.
    #[error("campaign state refused: {0}")]
    StateRefused(String),
}
