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

/// The two kinds of local work.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainKind {
    /// Round 0: the local moments vector — per feature the mean, then per
    /// feature the mean square, then the target's mean and mean square.
    Moments,
    /// A model round: train from `base` as `plan` says, with inputs
    /// normalised by the pooled `moments`.
    Update {
        /// The round's base model.
        base: Arc<[f32]>,
        /// The pooled moments from round 0.
        moments: Arc<[f32]>,
        /// Local steps, batch size and this round's learning rate.
        plan: StepPlan,
        /// Added to the weights after every local step (drift correction,
        /// [`mc_learn_core::scaffold`]); `None` for none.
        correction: Option<Arc<[f32]>>,
        /// Seed for shuffling (campaign seed mixed with the round).
        seed: u64,
    },
}

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
