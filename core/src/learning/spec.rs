//! What a campaign is: its participants, its settings and their checks.

use super::*;

/// One participant: its node id and its ed25519 public key (hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Participant {
    /// The participant's node (libp2p peer) id.
    pub node: String,
    /// Its ed25519 verifying key, 64 hex characters.
    pub key: String,
}

/// A campaign as it is stored in the knowledge document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignSpec {
    /// The model being trained, schema included, so participants need no
    /// earlier declaration.
    pub model: ModelSchema,
    /// Number of model rounds (after the moments round).
    pub rounds: u32,
    /// Local epochs per round of a member with the median sample count;
    /// every participant runs the steps these take (see the module
    /// documentation).
    pub local_epochs: u32,
    /// Rows per local optimiser step (absent in older declarations:
    /// [`DEFAULT_CAMPAIGN_BATCH`]).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Learning rate of model round 1, decaying to a tenth by the last
    /// (absent in older declarations: [`DEFAULT_CAMPAIGN_LR`]).
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// Correct client drift with control variates
    /// ([`mc_learn_core::scaffold`]); absent in older declarations: off.
    #[serde(default)]
    pub drift_correction: bool,
    /// The last round's learning rate as a fraction of round 1's, on a
    /// cosine (absent in older declarations:
    /// [`mc_learn_core::plan::FINAL_RATE_FRACTION`]).
    #[serde(default = "legacy_final_rate_fraction")]
    pub final_rate_fraction: f64,
    /// How round 1's weights are drawn from the seed (absent in older
    /// declarations: He-uniform).
    #[serde(default = "Init::legacy")]
    pub init: Init,
    /// Who takes part.
    pub participants: Vec<Participant>,
    /// The aggregation rule (`fedavg`, `median`, `trimmed-mean:0.2`,
    /// `multi-krum:f=1,m=3`).
    pub aggregation: Rule,
    /// How long a round waits for missing participants, in seconds.
    pub round_deadline_s: f64,
    /// Seed of the initial weights and of local shuffling.
    pub seed: u64,
    /// Bound on `‖update − base‖₂`.
    pub max_update_norm: f64,
    /// The node that created it.
    pub created_by: String,
    /// When, in ms since the epoch.
    pub created_at_ms: Millis,
}

/// What `POST /v1/campaigns` asks for, once the driver has resolved the
/// model's schema and the participants' keys.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRequest {
    /// The model's schema.
    pub model: ModelSchema,
    /// Model rounds.
    pub rounds: u32,
    /// Local epochs per round (of a member with the median sample count).
    pub local_epochs: u32,
    /// Rows per local step; `None` for [`DEFAULT_CAMPAIGN_BATCH`].
    pub batch_size: Option<u32>,
    /// Learning rate of round 1; `None` for [`DEFAULT_CAMPAIGN_LR`].
    pub learning_rate: Option<f64>,
    /// Drift correction; `None` for the rule's default
    /// ([`mc_learn_core::scaffold::default_for`]: on under FedAvg and Multi-Krum).
    pub drift_correction: Option<bool>,
    /// The last round's learning rate as a fraction of round 1's; `None`
    /// for [`DEFAULT_FINAL_RATE_FRACTION`].
    pub final_rate_fraction: Option<f64>,
    /// The starting weights; `None` for [`DEFAULT_CAMPAIGN_INIT`].
    pub init: Option<Init>,
    /// Participants with their keys.
    pub participants: Vec<Participant>,
    /// The aggregation rule.
    pub aggregation: Rule,
    /// Round deadline in seconds.
    pub round_deadline_s: f64,
    /// Seed; `None` picks one from the node's generator.
    pub seed: Option<u64>,
    /// Bound on update norms; `None` for [`DEFAULT_MAX_UPDATE_NORM`].
    pub max_update_norm: Option<f64>,
}

pub(super) fn default_batch_size() -> u32 {
    DEFAULT_CAMPAIGN_BATCH
}

pub(super) fn default_learning_rate() -> f64 {
    DEFAULT_CAMPAIGN_LR
}

pub(super) fn legacy_final_rate_fraction() -> f64 {
    mc_learn_core::plan::FINAL_RATE_FRACTION
}

/// Checks a final-rate fraction: a number in (0, 1].
pub(super) fn check_final_rate_fraction(fraction: f64) -> Result<(), String> {
    if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
        return Err(format!(
            "final_rate_fraction must be a number in (0, 1], not {fraction}"
        ));
    }
    Ok(())
}

/// Checks a campaign's local-training settings.
pub(super) fn check_local_training(batch_size: u32, learning_rate: f64) -> Result<(), String> {
    if !(1..=MAX_CAMPAIGN_BATCH).contains(&batch_size) {
        return Err(format!(
            "batch_size must be 1-{MAX_CAMPAIGN_BATCH}, not {batch_size}"
        ));
    }
    check_learning_rate(learning_rate)
}

/// Checks a learning rate a request asks for, a campaign's or transfer
/// learning's: a number in (0, [`MAX_CAMPAIGN_LR`]].
pub fn check_learning_rate(learning_rate: f64) -> Result<(), String> {
    if !(learning_rate.is_finite() && learning_rate > 0.0 && learning_rate <= MAX_CAMPAIGN_LR) {
        return Err(format!(
            "learning_rate must be a number in (0, {MAX_CAMPAIGN_LR}], not {learning_rate}"
        ));
    }
    Ok(())
}

impl CampaignSpec {
    /// The campaign's local-training settings.
    pub fn local_training(&self) -> LocalTraining {
        LocalTraining {
            local_epochs: self.local_epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            rounds: self.rounds,
            final_rate_fraction: self.final_rate_fraction,
        }
    }

    /// The settings of campaign `id`'s state machine, with the
    /// participants' keys.
    pub(super) fn settings(&self, id: CampaignId, keys: &BTreeMap<AuthorKey, NodeId>) -> Settings {
        Settings {
            id,
            model: self.model.clone(),
            participants: keys.keys().copied().collect(),
            training: self.local_training(),
            rule: self.aggregation,
            drift_correction: self.drift_correction,
            max_update_norm: self.max_update_norm,
            seed: self.seed,
            init: self.init,
        }
    }
}

/// Parses a 64-hex-character ed25519 verifying key.
pub fn parse_key(hex_key: &str) -> Result<AuthorKey, String> {
    let bytes = hex::decode(hex_key).map_err(|e| format!("key {hex_key:?} is not hex: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| format!("key {hex_key:?} is not 32 bytes"))
}

/// Parses a campaign id in hex.
pub fn parse_campaign_id(text: &str) -> Option<CampaignId> {
    let bytes = hex::decode(text).ok()?;
    Some(CampaignId(bytes.try_into().ok()?))
}

/// The digest type, re-exported for drivers that show it.
pub type ModelDigest = Digest;
