//! The local work a campaign asks of the driver, and what comes back.

use super::*;

/// Work the driver does for a campaign: local computation on local data.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainJob {
    /// The campaign.
    pub campaign: CampaignId,
    /// The round.
    pub round: u32,
    /// The model's schema.
    pub model: ModelSchema,
    /// What to compute.
    pub kind: TrainKind,
}

impl TrainJob {
    /// The report of this job's `outcome`.
    pub fn result(&self, outcome: Result<(Vec<f32>, u64), String>) -> TrainResult {
        TrainResult {
            campaign: self.campaign,
            round: self.round,
            base: match &self.kind {
                TrainKind::Moments => model_hash(&[]),
                TrainKind::Update { base, .. } => model_hash(base),
            },
            outcome,
        }
    }
}

/// The two kinds of local work: the moments of round 0, or a model
/// round's update ([`mc_learn_core::campaign::Work`]).
pub use mc_learn_core::campaign::Work as TrainKind;

/// What the driver reports back for a [`TrainJob`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrainResult {
    /// The campaign.
    pub campaign: CampaignId,
    /// The round.
    pub round: u32,
    /// [`model_hash`] of the base it trained from (of no weights in round
    /// 0): a node that adopted another base meanwhile ignores the result.
    pub base: Digest,
    /// The new weights (or moments) and the number of local samples, or why
    /// local work failed (e.g. no data imported for the model).
    pub outcome: Result<(Vec<f32>, u64), String>,
}

/// A finished campaign's model, for the driver to store as a model version.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedModel {
    /// The campaign.
    pub campaign: CampaignId,
    /// The model's schema.
    pub model: ModelSchema,
    /// Pooled moments (normalisation).
    pub moments: Vec<f32>,
    /// Final global weights.
    pub weights: Vec<f32>,
    /// Hash of the weights.
    pub model_hash: String,
}
