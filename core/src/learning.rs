//! Leaderless federated learning, as a part of the sans-IO core.
//!
//! A campaign is created on any node and written to the knowledge document
//! under `campaigns/<id>`, so it reaches every region by gossip and
//! anti-entropy. Every participant that sees it runs the same rounds on its
//! own; there is no coordinator.
//!
//! # Rounds
//!
//! - **Round 0 — moments.** Each participant sends, signed like any update,
//!   the per-column means and mean squares of its own data (`2·features + 2`
//!   numbers) with its sample count. [`mc_learn_core::plan::pool_moments`]
//!   pools the accepted ones, giving every node the same normalisation
//!   without anyone sharing a row: under FedAvg the exact pooled moments
//!   (sample-weighted means), under any robust rule the coordinate-wise
//!   median of the means as the centre and the median of every member's
//!   mean squared deviation from it as the variance (so the spread *between*
//!   members counts, and the variance can never come out negative). The
//!   median accepted sample count is kept as the campaign's *reference
//!   count*.
//! - **Rounds 1..=R — model.** Round 1 starts from weights every node draws
//!   from the campaign's seed ([`mc_learn_core::init::init_weights`]), so no
//!   one has to send them. Each participant trains from the round's base
//!   model (the driver does that: [`TrainJob`]), signs the new weights over
//!   (campaign, round, base hash, sample count, weights hash) and sends them
//!   in chunks straight to every other participant.
//!
//! # Local work is counted in steps
//!
//! Every participant runs the same number of optimiser steps in a model
//! round, `local_epochs · ⌈reference count / batch_size⌉` (a [`StepPlan`]:
//! `local_epochs` epochs of the median member), whatever its own row count.
//! Were each to run `local_epochs` epochs of its own rows, a member with `n`
//! rows would take `n/B·E` steps and FedAvg would then weight its update by
//! `n` again: large members would count twice over and the average would
//! drift towards the optimum of the wrong objective (the *objective
//! inconsistency* of FedAvg with heterogeneous local work). The learning
//! rate decays on a cosine from the campaign's `learning_rate` in round 1
//! to a tenth of it in round R, so the global model settles instead of
//! moving by about `rate × steps` every round ([`mc_learn_core::plan`]).
//!
//! Every node checks what it receives with a [`Collector`] (signature,
//! membership, round, base, shape, finiteness, norm, duplicates,
//! equivocation) and closes the round when every participant has spoken or at
//! its deadline. Aggregation depends only on the accepted set, so nodes that
//! accepted the same updates hold byte-identical models; each round's
//! accepted-set digest and model hash are recorded (and written to the
//! document under `campaigns/<id>/rounds/…`) so divergence is visible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mc_learn_core::aggregate::Rule;
use mc_learn_core::chunk::{self, Chunk, Reassembler};
use mc_learn_core::drift::{ControlVariates, MemberVariate};
use mc_learn_core::ed25519_dalek::SigningKey;
use mc_learn_core::plan::{LocalTraining, StepPlan, pool_moments, reference_count};
use mc_learn_core::round::{Collector, Config as RoundConfig, Evidence, NormBound, Rejection};
use mc_learn_core::{AuthorKey, CampaignId, Digest, ModelSchema, SignedUpdate, model_hash};
use mc_protocols::{LearnMessage, NodeId};
use serde::{Deserialize, Serialize};

use super::Millis;

mod catch_up;

pub use catch_up::{CatchUpRecord, MAX_STATE_BYTES, quorum};

/// Knowledge-document prefix of campaign declarations.
pub const CAMPAIGN_PREFIX: &str = "campaigns/";
/// Largest chunk of an update put in one message (well under the transport limit).
pub const UPDATE_CHUNK_BYTES: usize = 1 << 20;
/// Largest encoded update accepted from a peer.
pub const MAX_UPDATE_BYTES: usize = 64 << 20;
/// Default bound on `‖update − base‖₂` for model rounds.
pub const DEFAULT_MAX_UPDATE_NORM: f64 = 1_000.0;
/// Default rows per local optimiser step of a campaign.
pub const DEFAULT_CAMPAIGN_BATCH: u32 = mc_learn_core::plan::DEFAULT_BATCH_SIZE;
/// Default learning rate of a campaign's first model round (see
/// [`mc_learn_core::plan::DEFAULT_LEARNING_RATE`] for how it was chosen).
pub const DEFAULT_CAMPAIGN_LR: f64 = mc_learn_core::plan::DEFAULT_LEARNING_RATE;
/// Largest batch size a campaign may ask for.
pub const MAX_CAMPAIGN_BATCH: u32 = 65_536;
/// Largest learning rate a campaign may ask for.
pub const MAX_CAMPAIGN_LR: f64 = 10.0;

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
    /// ([`mc_learn_core::drift`]); absent in older declarations: off.
    #[serde(default)]
    pub drift_correction: bool,
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
    /// ([`mc_learn_core::drift::default_for`]: on under FedAvg and Multi-Krum).
    pub drift_correction: Option<bool>,
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
        /// [`mc_learn_core::drift`]); `None` for none.
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
    pub closed_by: String,
    /// Round duration on this node, ms.
    pub duration_ms: Millis,
    /// Set when aggregation failed and the model was kept.
    pub error: Option<String>,
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// The round's collector refused it.
    #[error("update rejected: {0}")]
    Rejected(String),
}

/// What the learning part asks of the node around it.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Messages for peers.
    pub sends: Vec<(NodeId, LearnMessage)>,
    /// Local work for the driver.
    pub jobs: Vec<TrainJob>,
    /// Knowledge-document writes (round records).
    pub writes: Vec<(String, serde_json::Value)>,
    /// Finished models.
    pub finished: Vec<FinishedModel>,
    /// Campaign progress to persist: (campaign, encoded [`Snapshot`]).
    pub saves: Vec<(CampaignId, Vec<u8>)>,
}

/// A campaign's progress as persisted at every round's close, so a restarted
/// node resumes where it was (and never loses a finished campaign's record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    round: u32,
    completed: bool,
    moments: Option<Vec<f32>>,
    global: Vec<f32>,
    history: Vec<RoundRecord>,
    rejections: BTreeMap<String, u64>,
    /// The median accepted sample count of round 0 (0 before it closed).
    /// Last, so progress saved by an older version fails to decode (and the
    /// campaign starts over) instead of resuming without it.
    reference_count: u64,
    /// The control variates (drift correction). Last for the same reason.
    controls: Option<SavedControls>,
}

/// [`ControlVariates`] as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedControls {
    global: Vec<f32>,
    /// (author, sample count, variate), in key order.
    members: Vec<(AuthorKey, u64, Vec<f32>)>,
}

impl SavedControls {
    fn of(controls: &ControlVariates) -> Self {
        Self {
            global: controls.global.clone(),
            members: controls
                .members
                .iter()
                .map(|(author, m)| (*author, m.samples, m.variate.clone()))
                .collect(),
        }
    }

    fn fits(&self, num_params: usize) -> bool {
        self.global.len() == num_params
            && self.members.iter().all(|(_, _, v)| v.len() == num_params)
    }

    fn into_variates(self) -> ControlVariates {
        ControlVariates {
            global: self.global,
            members: self
                .members
                .into_iter()
                .map(|(author, samples, variate)| (author, MemberVariate { variate, samples }))
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Run {
    id: CampaignId,
    spec: CampaignSpec,
    keys: BTreeMap<AuthorKey, NodeId>,
    round: u32,
    completed: bool,
    collector: Collector,
    round_started: Millis,
    own_update: Option<SignedUpdate>,
    moments: Option<Arc<[f32]>>,
    /// The median accepted sample count of round 0 (0 before it closed).
    reference_count: u64,
    /// Control variates once round 0 closed, if the campaign corrects drift.
    controls: Option<ControlVariates>,
    global: Arc<[f32]>,
    history: Vec<RoundRecord>,
    /// Updates that arrived for the next round before this node got there.
    early: Vec<SignedUpdate>,
    rejections: BTreeMap<String, u64>,
    evidence: BTreeMap<AuthorKey, Evidence>,
    /// Sightings of the campaign ahead or elsewhere ([`catch_up`]).
    catch_up: catch_up::Tracker,
}

/// The learning state of one node.
#[derive(Debug)]
pub(super) struct Learning {
    key: SigningKey,
    me: AuthorKey,
    runs: BTreeMap<CampaignId, Run>,
    observed: BTreeMap<CampaignId, CampaignSpec>,
    reassembler: Reassembler<NodeId>,
    /// Campaign states being received ([`catch_up`]).
    states: Reassembler<NodeId>,
    /// Updates for campaigns this node has not seen yet: the declaration
    /// travels by the document and may arrive after a fast peer's update.
    unknown: Vec<SignedUpdate>,
    /// Progress restored from the store, applied when the campaign's
    /// declaration is read again.
    resume: BTreeMap<CampaignId, Snapshot>,
}

/// Most updates kept for campaigns not yet known.
const MAX_UNKNOWN_UPDATES: usize = 256;

fn default_batch_size() -> u32 {
    DEFAULT_CAMPAIGN_BATCH
}

fn default_learning_rate() -> f64 {
    DEFAULT_CAMPAIGN_LR
}

/// Checks a campaign's local-training settings.
fn check_local_training(batch_size: u32, learning_rate: f64) -> Result<(), String> {
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
        }
    }
}

impl Learning {
    pub(super) fn new(key: SigningKey) -> Self {
        let me = key.verifying_key().to_bytes();
        Self {
            key,
            me,
            runs: BTreeMap::new(),
            observed: BTreeMap::new(),
            reassembler: Reassembler::new(chunk::Limits::default()),
            states: Reassembler::new(chunk::Limits {
                max_update_bytes: MAX_STATE_BYTES as u64,
                max_pending_per_sender: 1,
                max_bytes_per_sender: MAX_STATE_BYTES as u64,
            }),
            unknown: Vec::new(),
            resume: BTreeMap::new(),
        }
    }

    /// Takes the campaign progress the store held at start; undecodable
    /// entries are logged and skipped (the campaign then starts over).
    pub(super) fn restore(&mut self, saved: &[(String, Vec<u8>)]) {
        for (id, bytes) in saved {
            let Some(campaign) = parse_campaign_id(id) else {
                tracing::warn!(%id, "ignoring saved progress under a bad campaign id");
                continue;
            };
            match postcard::from_bytes::<Snapshot>(bytes) {
                Ok(snapshot) => {
                    self.resume.insert(campaign, snapshot);
                }
                Err(error) => tracing::warn!(%id, %error, "ignoring unreadable campaign progress"),
            }
        }
    }

    /// Keeps the key this node signs with (a restart must not change it).
    pub(super) fn with_key(mut self, key: SigningKey) -> Self {
        self.me = key.verifying_key().to_bytes();
        self.key = key;
        self
    }

    /// This node's verifying key (hex).
    pub(super) fn public_key_hex(&self) -> String {
        hex::encode(self.me)
    }

    /// Checks a request and turns it into a declaration and its id.
    pub(super) fn declare(
        &self,
        request: CampaignRequest,
        me: &NodeId,
        now: Millis,
        random_seed: u64,
    ) -> Result<(CampaignId, CampaignSpec), LearnError> {
        request
            .model
            .validate()
            .map_err(|e| LearnError::Invalid(e.to_string()))?;
        request
            .aggregation
            .validate()
            .map_err(|e| LearnError::Invalid(e.to_string()))?;
        if request.rounds == 0 || request.rounds > 10_000 {
            return Err(LearnError::Invalid("rounds must be 1-10000".into()));
        }
        if request.local_epochs == 0 || request.local_epochs > 1_000 {
            return Err(LearnError::Invalid("local_epochs must be 1-1000".into()));
        }
        if !(request.round_deadline_s.is_finite() && request.round_deadline_s > 0.0) {
            return Err(LearnError::Invalid(
                "round_deadline_s must be a positive number".into(),
            ));
        }
        if request.participants.is_empty() {
            return Err(LearnError::Invalid("a campaign needs participants".into()));
        }
        let mut nodes = BTreeSet::new();
        let mut keys = BTreeSet::new();
        for p in &request.participants {
            parse_key(&p.key).map_err(LearnError::Invalid)?;
            if !nodes.insert(&p.node) || !keys.insert(&p.key) {
                return Err(LearnError::Invalid(format!(
                    "participant {} is listed twice",
                    p.node
                )));
            }
        }
        let batch_size = request.batch_size.unwrap_or(DEFAULT_CAMPAIGN_BATCH);
        let learning_rate = request.learning_rate.unwrap_or(DEFAULT_CAMPAIGN_LR);
        check_local_training(batch_size, learning_rate).map_err(LearnError::Invalid)?;
        let max_update_norm = request.max_update_norm.unwrap_or(DEFAULT_MAX_UPDATE_NORM);
        if !(max_update_norm.is_finite() && max_update_norm > 0.0) {
            return Err(LearnError::Invalid(
                "max_update_norm must be a positive number".into(),
            ));
        }
        let mut participants = request.participants;
        participants.sort();
        let spec = CampaignSpec {
            model: request.model,
            rounds: request.rounds,
            local_epochs: request.local_epochs,
            batch_size,
            learning_rate,
            drift_correction: request
                .drift_correction
                .unwrap_or(mc_learn_core::drift::default_for(request.aggregation)),
            participants,
            aggregation: request.aggregation,
            round_deadline_s: request.round_deadline_s,
            seed: request.seed.unwrap_or(random_seed),
            max_update_norm,
            created_by: me.to_string(),
            created_at_ms: now,
        };
        let id = CampaignId::from_name(&format!(
            "{}/{}/{}/{}",
            spec.model.name, spec.created_by, spec.created_at_ms, spec.seed
        ));
        Ok((id, spec))
    }

    /// Looks at the campaign declarations in the document and starts the
    /// ones this node takes part in.
    pub(super) fn observe(
        &mut self,
        declared: Vec<(CampaignId, CampaignSpec)>,
        now: Millis,
        fx: &mut Effects,
    ) {
        for (id, spec) in declared {
            if self.runs.contains_key(&id) || self.observed.contains_key(&id) {
                continue;
            }
            if let Err(error) = check_local_training(spec.batch_size, spec.learning_rate) {
                tracing::warn!(campaign = %id, %error, "not joining a campaign with bad training settings");
                self.observed.insert(id, spec);
                continue;
            }
            let keys: Result<BTreeMap<AuthorKey, NodeId>, String> = spec
                .participants
                .iter()
                .map(|p| Ok((parse_key(&p.key)?, NodeId::new(p.node.clone()))))
                .collect();
            let keys = match keys {
                Ok(keys) if keys.contains_key(&self.me) => keys,
                Ok(_) => {
                    self.observed.insert(id, spec);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(campaign = %id, %error, "ignoring a campaign with a bad key");
                    self.observed.insert(id, spec);
                    continue;
                }
            };
            tracing::info!(campaign = %id, model = %spec.model.name, rounds = spec.rounds, "joining campaign");
            let empty: Arc<[f32]> = Arc::from(Vec::new());
            let collector = match Collector::new(round_config(id, &spec, &keys, 0, &empty)) {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(campaign = %id, %error, "cannot start campaign");
                    self.observed.insert(id, spec);
                    continue;
                }
            };
            let mut run = Run {
                id,
                keys,
                round: 0,
                completed: false,
                collector,
                round_started: now,
                own_update: None,
                moments: None,
                reference_count: 0,
                controls: None,
                global: empty,
                history: Vec::new(),
                early: Vec::new(),
                rejections: BTreeMap::new(),
                evidence: BTreeMap::new(),
                catch_up: catch_up::Tracker::default(),
                spec,
            };
            if let Some(snapshot) = self.resume.remove(&id)
                && let Err(error) = run.resume(snapshot)
            {
                tracing::warn!(campaign = %id, %error, "cannot resume; starting over");
            }
            if run.completed {
                fx.finished.extend(run.finished());
            } else {
                tracing::info!(campaign = %id, round = run.round, "campaign round started");
                fx.jobs.push(run.job(&self.me));
            }
            self.runs.insert(id, run);
            let (waiting, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unknown)
                .into_iter()
                .partition(|u| u.header.campaign == id);
            self.unknown = rest;
            for update in waiting {
                let _ = self.offer(update, now, fx, false);
            }
        }
    }

    /// The driver finished local work.
    pub(super) fn on_trained(&mut self, result: TrainResult, now: Millis, fx: &mut Effects) {
        let Some(run) = self.runs.get_mut(&result.campaign) else {
            return;
        };
        if run.completed
            || run.round != result.round
            || run.own_update.is_some()
            || result.base != run.collector.config().base_hash
        {
            return; // the round closed without us, or we caught up meanwhile
        }
        let (weights, samples) = match result.outcome {
            Ok(ok) => ok,
            Err(error) => {
                tracing::warn!(campaign = %run.id, round = run.round, %error, "local training failed; not contributing this round");
                return;
            }
        };
        let base = run.collector.config().base_hash;
        let update =
            match mc_learn_core::update::sign(&self.key, run.id, run.round, base, samples, weights)
            {
                Ok(u) => u,
                Err(error) => {
                    tracing::error!(campaign = %run.id, %error, "cannot sign the local update");
                    return;
                }
            };
        if let Err(rejection) = run.collector.offer(update.clone()) {
            tracing::warn!(campaign = %run.id, round = run.round, %rejection, "own update refused by own collector");
        }
        run.own_update = Some(update);
        let sends = run.send_own(&self.me, None);
        fx.sends.extend(sends);
        self.maybe_close(result.campaign, now, fx);
    }

    /// A learning message from a peer.
    pub(super) fn on_message(
        &mut self,
        from: &NodeId,
        message: LearnMessage,
        now: Millis,
        fx: &mut Effects,
    ) -> Result<(), LearnError> {
        match message {
            LearnMessage::UpdateChunk {
                campaign, chunk, ..
            } => {
                let piece = Chunk::decode(&chunk, UPDATE_CHUNK_BYTES + chunk::CHUNK_OVERHEAD)
                    .map_err(|e| LearnError::Malformed(e.to_string()))?;
                let Some(bytes) = self
                    .reassembler
                    .insert(from.clone(), piece)
                    .map_err(|e| LearnError::Malformed(e.to_string()))?
                else {
                    return Ok(());
                };
                let update = SignedUpdate::decode(&bytes, MAX_UPDATE_BYTES)
                    .map_err(|e| LearnError::Malformed(e.to_string()))?;
                if update.header.campaign.0 != campaign {
                    return Err(LearnError::Malformed(
                        "chunk and update name different campaigns".into(),
                    ));
                }
                self.offer(update, now, fx, true)
            }
            LearnMessage::Evidence {
                campaign, evidence, ..
            } => {
                let evidence: Evidence = postcard::from_bytes(&evidence)
                    .map_err(|e| LearnError::Malformed(e.to_string()))?;
                let Some(run) = self.runs.get_mut(&CampaignId(campaign)) else {
                    return Ok(());
                };
                if evidence.first.header.round != run.round {
                    return Ok(());
                }
                run.collector
                    .offer_evidence(evidence)
                    .map_err(|r| LearnError::Rejected(r.to_string()))?;
                run.evidence.insert(evidence.author(), evidence);
                self.maybe_close(CampaignId(campaign), now, fx);
                Ok(())
            }
            LearnMessage::StateRequest { campaign, .. } => {
                self.serve_state(from, campaign, fx);
                Ok(())
            }
            LearnMessage::StateChunk {
                campaign, chunk, ..
            } => self.on_state_chunk(from, campaign, &chunk, now, fx),
        }
    }

    /// Offers a whole update (from a peer, or submitted over HTTP).
    /// With `keep_unknown`, an update for a campaign not yet known is kept
    /// (bounded) until its declaration arrives.
    pub(super) fn offer(
        &mut self,
        update: SignedUpdate,
        now: Millis,
        fx: &mut Effects,
        keep_unknown: bool,
    ) -> Result<(), LearnError> {
        let id = update.header.campaign;
        let Some(run) = self.runs.get_mut(&id) else {
            if keep_unknown && !self.observed.contains_key(&id) {
                if self.unknown.len() >= MAX_UNKNOWN_UPDATES {
                    self.unknown.remove(0);
                }
                if !self
                    .unknown
                    .iter()
                    .any(|u| u.signed_header() == update.signed_header())
                {
                    self.unknown.push(update);
                }
                return Ok(());
            }
            return Err(LearnError::UnknownCampaign(id.to_string()));
        };
        let round = update.header.round;
        let me = self.me;
        if run.sight(&update, &me, now, fx) {
            if round > run.round {
                return Ok(()); // kept for when this node gets there
            }
            run.count(&Rejection::WrongBase);
            return Err(LearnError::Rejected(
                "update on another base than this node's; noted for catch-up".into(),
            ));
        }
        if !run.completed && round == run.round + 1 {
            // A faster peer is already in the next round: keep its update
            // (one per author) until we get there.
            if run.early.len() < run.keys.len() * 2
                && !run
                    .early
                    .iter()
                    .any(|u| u.signed_header() == update.signed_header())
            {
                run.early.push(update);
            }
            return Ok(());
        }
        if run.completed || round != run.round {
            run.count(&Rejection::WrongRound {
                expected: run.round,
                got: round,
            });
            return Err(LearnError::Rejected(format!(
                "update for round {round}, this node is at round {}{}",
                run.round,
                if run.completed { " (completed)" } else { "" }
            )));
        }
        match run.collector.offer(update) {
            Ok(_) => {
                self.maybe_close(id, now, fx);
                Ok(())
            }
            Err(rejection) => {
                run.count(&rejection);
                if rejection == Rejection::Equivocation
                    && let Some(evidence) = run.collector.evidence().last().copied()
                {
                    run.evidence.insert(evidence.author(), evidence);
                    let bytes = postcard::to_stdvec(&evidence).unwrap_or_default();
                    for node in run.keys.values() {
                        fx.sends.push((
                            node.clone(),
                            LearnMessage::Evidence {
                                campaign: id.0,
                                round: run.round,
                                evidence: bytes.clone(),
                            },
                        ));
                    }
                    self.maybe_close(id, now, fx);
                }
                Err(LearnError::Rejected(rejection.to_string()))
            }
        }
    }

    /// Sends an update that the API accepted (a member without a node of
    /// its own handed it to this one) on to every other participant, as if
    /// its author had sent it to each.
    pub(super) fn relay(&self, update: &SignedUpdate, fx: &mut Effects) {
        if let Some(run) = self.runs.get(&update.header.campaign) {
            fx.sends.extend(run.send_update(update, &self.me, None));
        }
    }

    /// A peer connected: resend our update for the current round of every
    /// campaign it takes part in (it may have missed it).
    pub(super) fn on_peer_connected(&mut self, peer: &NodeId, fx: &mut Effects) {
        let me = self.me;
        for run in self.runs.values() {
            if !run.completed && run.keys.values().any(|n| n == peer) {
                fx.sends.extend(run.send_own(&me, Some(peer)));
            }
        }
    }

    /// Closes rounds whose deadline passed.
    pub(super) fn on_tick(&mut self, now: Millis, fx: &mut Effects) {
        self.retry_catch_ups(now, fx);
        let ids: Vec<CampaignId> = self.runs.keys().copied().collect();
        for id in ids {
            self.maybe_close(id, now, fx);
        }
    }

    fn maybe_close(&mut self, id: CampaignId, now: Millis, fx: &mut Effects) {
        let me = self.me;
        let Some(run) = self.runs.get_mut(&id) else {
            return;
        };
        loop {
            if run.completed {
                return;
            }
            let deadline = run.round_started + (run.spec.round_deadline_s * 1000.0) as Millis;
            let complete = run.collector.is_complete();
            if !complete && now < deadline {
                return;
            }
            run.close(complete, now, &me, fx);
            if run.completed {
                return;
            }
            // Updates that arrived early may complete the new round at once.
            let early = std::mem::take(&mut run.early);
            for update in early {
                if update.header.round != run.round || run.sight(&update, &me, now, fx) {
                    continue;
                }
                if let Err(rejection) = run.collector.offer(update) {
                    run.count(&rejection);
                }
            }
        }
    }

    pub(super) fn views(&self) -> Vec<CampaignView> {
        let mut views: Vec<CampaignView> = self.runs.values().map(Run::view).collect();
        views.extend(self.observed.iter().map(|(id, spec)| CampaignView {
            id: id.to_string(),
            state: CampaignState::Observing,
            current_round: 0,
            total_rounds: spec.rounds + 1,
            spec: spec.clone(),
            rounds: Vec::new(),
            rejections: BTreeMap::new(),
            equivocators: Vec::new(),
            model_hash: None,
            reference_count: None,
            local_steps: None,
            round_learning_rate: None,
            caught_up: Vec::new(),
        }));
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }

    pub(super) fn view(&self, id: &str) -> Result<CampaignView, LearnError> {
        self.views()
            .into_iter()
            .find(|v| v.id == id)
            .ok_or_else(|| LearnError::UnknownCampaign(id.to_string()))
    }

    pub(super) fn knows(&self, id: &CampaignId) -> bool {
        self.runs.contains_key(id) || self.observed.contains_key(id)
    }
}

impl Run {
    /// The current model round's local work.
    fn plan(&self) -> StepPlan {
        self.spec
            .local_training()
            .plan(self.reference_count, self.round)
    }

    fn job(&self, me: &AuthorKey) -> TrainJob {
        let kind = match &self.moments {
            None => TrainKind::Moments,
            Some(moments) => {
                let plan = self.plan();
                TrainKind::Update {
                    base: self.global.clone(),
                    moments: moments.clone(),
                    plan,
                    correction: self
                        .controls
                        .as_ref()
                        .and_then(|c| c.step_correction(me, plan.learning_rate))
                        .map(Arc::from),
                    seed: self.spec.seed
                        ^ u64::from(self.round).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                }
            }
        };
        TrainJob {
            campaign: self.id,
            round: self.round,
            model: self.spec.model.clone(),
            kind,
        }
    }

    fn count(&mut self, rejection: &Rejection) {
        let name = match rejection {
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
        };
        *self.rejections.entry(name.to_string()).or_default() += 1;
    }

    /// Our update for the current round, in chunks, for every other
    /// participant (or only `to`).
    fn send_own(&self, me: &AuthorKey, to: Option<&NodeId>) -> Vec<(NodeId, LearnMessage)> {
        match &self.own_update {
            Some(update) => self.send_update(update, me, to),
            None => Vec::new(),
        }
    }

    /// `update` in chunks for every participant but `me` and its author
    /// (or only `to`).
    fn send_update(
        &self,
        update: &SignedUpdate,
        me: &AuthorKey,
        to: Option<&NodeId>,
    ) -> Vec<(NodeId, LearnMessage)> {
        let pieces = match chunk::split(&update.encode(), UPDATE_CHUNK_BYTES) {
            Ok(p) => p,
            Err(error) => {
                tracing::error!(campaign = %self.id, %error, "cannot chunk an update");
                return Vec::new();
            }
        };
        let mut sends = Vec::new();
        for (key, node) in &self.keys {
            if key == me || *key == update.author || to.is_some_and(|t| t != node) {
                continue;
            }
            for piece in &pieces {
                sends.push((
                    node.clone(),
                    LearnMessage::UpdateChunk {
                        campaign: self.id.0,
                        round: update.header.round,
                        chunk: piece.encode(),
                    },
                ));
            }
        }
        sends
    }

    fn close(&mut self, complete: bool, now: Millis, me: &AuthorKey, fx: &mut Effects) {
        // Moments are pooled exactly under FedAvg and robustly under any
        // other rule (`pool_moments`: Multi-Krum and trimmed means need more
        // updates than a small consortium may have); model rounds use the
        // campaign's rule.
        let outcome = if self.round == 0 {
            let accepted: Vec<(u64, &[f32])> = self
                .collector
                .accepted()
                .map(|u| (u.header.sample_count, u.weights.as_slice()))
                .collect();
            pool_moments(self.spec.aggregation, &accepted).map(|pooled| {
                let reference = reference_count(accepted.iter().map(|(n, _)| *n));
                (pooled, reference)
            })
        } else {
            self.collector
                .aggregate(self.spec.aggregation)
                .map(|outcome| (outcome.model, 0))
        };
        let mut record = RoundRecord {
            round: self.round,
            accepted: self.collector.accepted().count(),
            missing: self.collector.missing().len(),
            excluded: self.evidence.len(),
            accepted_digest: self.collector.accepted_digest().to_string(),
            model_hash: String::new(),
            closed_by: if complete { "complete" } else { "deadline" }.into(),
            duration_ms: now.saturating_sub(self.round_started),
            error: None,
        };
        match outcome {
            Ok((model, reference)) => {
                record.model_hash = model_hash(&model).to_string();
                if self.round == 0 {
                    self.moments = Some(Arc::from(model));
                    self.reference_count = reference;
                    self.global = Arc::from(mc_learn_core::init::init_weights(
                        &self.spec.model,
                        self.spec.seed,
                    ));
                    self.controls = self
                        .spec
                        .drift_correction
                        .then(|| ControlVariates::zeros(self.global.len()));
                } else {
                    let plan = self.plan();
                    let accepted: Vec<(AuthorKey, u64, &[f32])> = self
                        .collector
                        .accepted()
                        .map(|u| (u.author, u.header.sample_count, u.weights.as_slice()))
                        .collect();
                    if let Some(controls) = &mut self.controls
                        && let Err(error) = controls.close_round(
                            &self.global,
                            &accepted,
                            self.spec.aggregation,
                            plan.steps,
                            plan.learning_rate,
                        )
                    {
                        // Cannot happen with a validated spec; the campaign
                        // goes on uncorrected rather than stop.
                        tracing::error!(campaign = %self.id, %error, "drift correction turned off");
                        self.controls = None;
                    }
                    self.global = Arc::from(model);
                }
            }
            Err(error) => {
                // Nothing usable (e.g. no update arrived): keep the model.
                record.error = Some(error.to_string());
                record.model_hash = model_hash(&self.global).to_string();
                if self.round == 0 {
                    // Without moments no model round can run; try again.
                    tracing::warn!(campaign = %self.id, %error, "moments round produced nothing; repeating it");
                }
            }
        }
        tracing::info!(campaign = %self.id, round = self.round, accepted = record.accepted, missing = record.missing, closed_by = %record.closed_by, "round closed");
        fx.writes.push((
            format!(
                "{CAMPAIGN_PREFIX}{}/rounds/{:06}/{}",
                self.id,
                self.round,
                hex::encode(&me[..8])
            ),
            serde_json::json!({
                "accepted": record.accepted,
                "accepted_digest": record.accepted_digest,
                "model_hash": record.model_hash,
            }),
        ));
        self.history.push(record);
        if self.moments.is_some() {
            if self.round >= self.spec.rounds {
                self.completed = true;
                fx.saves.push((self.id, self.snapshot()));
                fx.finished.extend(self.finished());
                return;
            }
            self.round += 1;
        }
        fx.saves.push((self.id, self.snapshot()));
        self.round_started = now;
        self.own_update = None;
        let base = if self.round == 0 {
            Arc::from(Vec::new())
        } else {
            self.global.clone()
        };
        match Collector::new(round_config(
            self.id, &self.spec, &self.keys, self.round, &base,
        )) {
            Ok(c) => self.collector = c,
            Err(error) => {
                tracing::error!(campaign = %self.id, %error, "cannot open the next round");
                self.completed = true;
                return;
            }
        }
        fx.jobs.push(self.job(me));
    }

    fn finished(&self) -> Option<FinishedModel> {
        let moments = self.moments.as_deref()?;
        Some(FinishedModel {
            campaign: self.id,
            model: self.spec.model.clone(),
            moments: moments.to_vec(),
            weights: self.global.to_vec(),
            model_hash: model_hash(&self.global).to_string(),
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        let snapshot = Snapshot {
            round: self.round,
            completed: self.completed,
            moments: self.moments.as_deref().map(<[f32]>::to_vec),
            global: self.global.to_vec(),
            history: self.history.clone(),
            rejections: self.rejections.clone(),
            reference_count: self.reference_count,
            controls: self.controls.as_ref().map(SavedControls::of),
        };
        postcard::to_stdvec(&snapshot).unwrap_or_default()
    }

    /// Continues from saved progress: the round in progress starts again
    /// (its updates were not saved; peers resend theirs on reconnect).
    fn resume(&mut self, snapshot: Snapshot) -> Result<(), String> {
        let features = self.spec.model.features.len();
        if snapshot
            .moments
            .as_ref()
            .is_some_and(|m| m.len() != 2 * features + 2)
            || (snapshot.round > 0 && snapshot.global.len() != self.spec.model.num_params())
            || snapshot.round > self.spec.rounds
            || snapshot
                .controls
                .as_ref()
                .is_some_and(|c| !c.fits(self.spec.model.num_params()))
        {
            return Err("saved progress does not fit the campaign".into());
        }
        let base: Arc<[f32]> = if snapshot.round == 0 {
            Arc::from(Vec::new())
        } else {
            Arc::from(snapshot.global.clone())
        };
        self.collector = Collector::new(round_config(
            self.id,
            &self.spec,
            &self.keys,
            snapshot.round,
            &base,
        ))
        .map_err(|e| e.to_string())?;
        self.round = snapshot.round;
        self.completed = snapshot.completed;
        self.moments = snapshot.moments.map(Arc::from);
        self.reference_count = snapshot.reference_count;
        self.controls = snapshot.controls.map(SavedControls::into_variates);
        self.global = Arc::from(snapshot.global);
        self.history = snapshot.history;
        self.rejections = snapshot.rejections;
        Ok(())
    }

    fn view(&self) -> CampaignView {
        CampaignView {
            id: self.id.to_string(),
            state: if self.completed {
                CampaignState::Completed
            } else {
                CampaignState::Running
            },
            current_round: self.round,
            total_rounds: self.spec.rounds + 1,
            spec: self.spec.clone(),
            rounds: self.history.clone(),
            rejections: self.rejections.clone(),
            equivocators: self.evidence.keys().map(hex::encode).collect(),
            model_hash: (!self.global.is_empty()).then(|| model_hash(&self.global).to_string()),
            reference_count: self.moments.is_some().then_some(self.reference_count),
            local_steps: self
                .moments
                .is_some()
                .then(|| self.spec.local_training().steps(self.reference_count)),
            round_learning_rate: (self.moments.is_some() && self.round > 0)
                .then(|| self.spec.local_training().rate(self.round)),
            caught_up: self.catch_up.done.clone(),
        }
    }
}

fn round_config(
    id: CampaignId,
    spec: &CampaignSpec,
    keys: &BTreeMap<AuthorKey, NodeId>,
    round: u32,
    base: &Arc<[f32]>,
) -> RoundConfig {
    let features = spec.model.features.len();
    let (num_params, norm_bound) = if round == 0 {
        ((2 * features + 2) as u32, NormBound::Unbounded)
    } else {
        (
            spec.model.num_params() as u32,
            NormBound::Delta {
                base: base.clone(),
                max: spec.max_update_norm,
            },
        )
    };
    RoundConfig {
        campaign: id,
        round,
        base_hash: model_hash(base),
        num_params,
        participants: keys.keys().copied().collect(),
        norm_bound,
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

#[cfg(test)]
mod tests {
    use mc_learn_core::plan::FINAL_RATE_FRACTION;
    use mc_learn_core::update;

    use super::*;

    const ROUNDS: u32 = 4;

    /// Node `i`'s key (node 0 is the one under test).
    fn key(i: u8) -> SigningKey {
        SigningKey::from_bytes(&[i + 1; 32])
    }

    fn request(rule: Rule) -> CampaignRequest {
        CampaignRequest {
            model: mc_learn_core::schema::builtin_named("latency").unwrap(),
            rounds: ROUNDS,
            local_epochs: 2,
            batch_size: Some(64),
            learning_rate: Some(0.01),
            drift_correction: Some(false),
            participants: (0..3)
                .map(|i| Participant {
                    node: format!("n{i}"),
                    key: hex::encode(key(i).verifying_key().to_bytes()),
                })
                .collect(),
            aggregation: rule,
            round_deadline_s: 10.0,
            seed: Some(5),
            max_update_norm: None,
        }
    }

    /// Node 0 declares and joins a campaign; returns its first job.
    fn start(learning: &mut Learning, request: CampaignRequest) -> (CampaignId, TrainJob) {
        let (id, spec) = learning.declare(request, &NodeId::new("n0"), 0, 1).unwrap();
        let mut fx = Effects::default();
        learning.observe(vec![(id, spec)], 0, &mut fx);
        assert_eq!(fx.jobs.len(), 1);
        (id, fx.jobs.remove(0))
    }

    /// Every member's round result: node 0's through `on_trained`, the
    /// others' signed and offered as if they came from the network. Returns
    /// what the round's close produced.
    fn play_round(
        learning: &mut Learning,
        id: CampaignId,
        round: u32,
        base: &[f32],
        results: [(Vec<f32>, u64); 3],
    ) -> Effects {
        let mut fx = Effects::default();
        for (i, (weights, count)) in results.into_iter().enumerate() {
            if i == 0 {
                let result = TrainResult {
                    campaign: id,
                    round,
                    base: model_hash(base),
                    outcome: Ok((weights, count)),
                };
                learning.on_trained(result, 1, &mut fx);
            } else {
                let signed =
                    update::sign(&key(i as u8), id, round, model_hash(base), count, weights)
                        .unwrap();
                learning.offer(signed, 1, &mut fx, false).unwrap();
            }
        }
        fx
    }

    /// Moments of 7 features and a target, every column with `mean` and
    /// variance 1.
    fn moments(mean: f32) -> Vec<f32> {
        let mut v = vec![mean; 7];
        v.extend([mean * mean + 1.0; 7]);
        v.extend([mean, mean * mean + 1.0]);
        v
    }

    /// Equal up to rounding.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs()
    }

    fn update_job(fx: &mut Effects) -> (Arc<[f32]>, Arc<[f32]>, StepPlan) {
        assert_eq!(fx.jobs.len(), 1, "one job for the next round");
        match fx.jobs.remove(0).kind {
            TrainKind::Update {
                base,
                moments,
                plan,
                ..
            } => (base, moments, plan),
            TrainKind::Moments => panic!("expected a model round"),
        }
    }

    #[test]
    fn every_member_runs_the_steps_of_the_median_member_at_a_decaying_rate() {
        let mut learning = Learning::new(key(0));
        let (id, job) = start(&mut learning, request(Rule::FedAvg));
        assert_eq!(job.kind, TrainKind::Moments);
        let mut fx = play_round(
            &mut learning,
            id,
            0,
            &[],
            [
                (moments(1.0), 300),
                (moments(2.0), 1000),
                (moments(3.0), 9000),
            ],
        );
        // 2 epochs of the median member's 1000 rows in batches of 64.
        let (mut base, _, plan) = update_job(&mut fx);
        assert_eq!(plan.steps, 2 * 1000u32.div_ceil(64));
        assert_eq!(plan.batch_size, 64);
        assert!(close(plan.learning_rate, 0.01), "{}", plan.learning_rate);
        let view = learning.view(&id.to_string()).unwrap();
        assert_eq!(view.reference_count, Some(1000));
        assert_eq!(view.local_steps, Some(32));
        assert!(view.round_learning_rate.is_some_and(|r| close(r, 0.01)));
        let mut plans = vec![plan];
        for round in 1..=ROUNDS {
            let step = |d: f32| (base.iter().map(|w| w + d).collect(), 100);
            let results = [step(0.001), step(0.002), step(0.003)];
            let mut fx = play_round(&mut learning, id, round, &base, results);
            if round == ROUNDS {
                assert!(fx.jobs.is_empty());
                assert_eq!(fx.finished.len(), 1);
            } else {
                let (next, _, plan) = update_job(&mut fx);
                plans.push(plan);
                base = next;
            }
        }
        assert!(plans.iter().all(|p| p.steps == 32 && p.batch_size == 64));
        let (first, last) = (
            plans[0].learning_rate,
            plans[ROUNDS as usize - 1].learning_rate,
        );
        assert!(
            last < first,
            "round {ROUNDS}'s rate {last} vs round 1's {first}"
        );
        assert!(close(last, 0.01 * FINAL_RATE_FRACTION), "{last}");
        assert!(
            plans
                .windows(2)
                .all(|w| w[1].learning_rate < w[0].learning_rate)
        );
    }

    #[test]
    fn robust_rules_pool_moments_with_the_spread_between_members() {
        let mut learning = Learning::new(key(0));
        let (id, _) = start(&mut learning, request(Rule::Median));
        let mut fx = play_round(
            &mut learning,
            id,
            0,
            &[],
            [
                (moments(0.0), 500),
                (moments(10.0), 500),
                (moments(20.0), 500),
            ],
        );
        let (_, pooled, _) = update_job(&mut fx);
        // Centre: the median mean, 10. Variance: the median of every
        // member's mean squared deviation from it (101, 1, 101), so the
        // mean square is 101 + 10². Separate medians of the means and of
        // the mean squares (1, 101, 401) would give variance 1.
        for j in 0..7 {
            assert_eq!(pooled[j], 10.0);
            assert!((pooled[7 + j] - 201.0).abs() < 1e-3, "{}", pooled[7 + j]);
        }
        assert!((pooled[15] - 201.0).abs() < 1e-3);
        let expected = pool_moments(
            Rule::Median,
            &[
                (500, &moments(0.0)),
                (500, &moments(10.0)),
                (500, &moments(20.0)),
            ],
        )
        .unwrap();
        assert_eq!(&pooled[..], &expected[..]);
        let view = learning.view(&id.to_string()).unwrap();
        assert_eq!(view.rounds[0].model_hash, model_hash(&pooled).to_string());
        assert_eq!(view.reference_count, Some(500));
    }

    #[test]
    fn declarations_without_training_settings_take_the_defaults() {
        let learning = Learning::new(key(0));
        let (_, spec) = learning
            .declare(request(Rule::FedAvg), &NodeId::new("n0"), 0, 1)
            .unwrap();
        let mut json = serde_json::to_value(&spec).unwrap();
        let fields = json.as_object_mut().unwrap();
        assert!(fields.remove("batch_size").is_some());
        assert!(fields.remove("learning_rate").is_some());
        assert!(fields.remove("drift_correction").is_some());
        let older: CampaignSpec = serde_json::from_value(json).unwrap();
        assert_eq!(older.batch_size, DEFAULT_CAMPAIGN_BATCH);
        assert_eq!(older.learning_rate, DEFAULT_CAMPAIGN_LR);
        // Campaigns declared before drift correction existed keep training
        // the way they started.
        assert!(!older.drift_correction);
        assert_eq!((older.rounds, older.seed), (spec.rounds, spec.seed));

        let mut unset = request(Rule::FedAvg);
        (
            unset.batch_size,
            unset.learning_rate,
            unset.drift_correction,
        ) = (None, None, None);
        let (_, spec) = learning.declare(unset, &NodeId::new("n0"), 0, 1).unwrap();
        assert_eq!(spec.batch_size, DEFAULT_CAMPAIGN_BATCH);
        assert_eq!(spec.learning_rate, DEFAULT_CAMPAIGN_LR);
        assert!(spec.drift_correction, "on under FedAvg");
        let mut robust = request(Rule::Median);
        robust.drift_correction = None;
        let (_, spec) = learning.declare(robust, &NodeId::new("n0"), 0, 1).unwrap();
        assert!(!spec.drift_correction, "off under the median");
        let mut on = request(Rule::Median);
        on.drift_correction = Some(true);
        let (_, spec) = learning.declare(on, &NodeId::new("n0"), 0, 1).unwrap();
        assert!(spec.drift_correction, "a declaration can turn it on");
    }

    /// The job's correction (`None` for none).
    fn correction_of(job: &TrainJob) -> Option<Vec<f32>> {
        match &job.kind {
            TrainKind::Update { correction, .. } => correction.as_deref().map(<[f32]>::to_vec),
            TrainKind::Moments => panic!("expected a model round"),
        }
    }

    #[test]
    fn drift_correction_follows_the_federation_and_survives_a_restart() {
        let mut learning = Learning::new(key(0));
        let mut asked = request(Rule::FedAvg);
        asked.drift_correction = Some(true);
        let (id, _) = start(&mut learning, asked);
        let mut fx = play_round(
            &mut learning,
            id,
            0,
            &[],
            [
                (moments(1.0), 300),
                (moments(2.0), 1000),
                (moments(3.0), 9000),
            ],
        );
        let job = fx.jobs[0].clone();
        let (base, _, plan1) = update_job(&mut fx);
        assert_eq!(correction_of(&job), None, "nothing to correct in round 1");

        // Node 0 moves every weight by +0.03, the others by +0.01 and
        // −0.01; FedAvg (equal counts) moves the federation by +0.01.
        let moved = |d: f32| base.iter().map(|w| w + d).collect::<Vec<f32>>();
        let mut fx = play_round(
            &mut learning,
            id,
            1,
            &base,
            [(moved(0.03), 100), (moved(0.01), 100), (moved(-0.01), 100)],
        );
        let job = fx.jobs[0].clone();
        let (next, _, plan2) = update_job(&mut fx);
        let mut expected = ControlVariates::zeros(base.len());
        let updates = [moved(0.03), moved(0.01), moved(-0.01)];
        let accepted: Vec<(AuthorKey, u64, &[f32])> = (0..3)
            .map(|i| {
                (
                    key(i as u8).verifying_key().to_bytes(),
                    100,
                    &updates[i][..],
                )
            })
            .collect();
        expected
            .close_round(
                &base,
                &accepted,
                Rule::FedAvg,
                plan1.steps,
                plan1.learning_rate,
            )
            .unwrap();
        let correction = correction_of(&job).expect("round 2 is corrected");
        assert_eq!(
            Some(correction.clone()),
            expected.step_correction(&learning.me, plan2.learning_rate)
        );
        assert!(
            next.iter()
                .zip(base.iter())
                .all(|(n, b)| (n - b - 0.01).abs() < 1e-6),
            "FedAvg moved the model by +0.01"
        );
        // Node 0 went further than the federation: its steps are pulled
        // back, by 0.02 over the round's steps at round 1's rate, at the
        // correction's strength α.
        let per_step = -0.02 / f64::from(plan1.steps) * plan2.learning_rate / plan1.learning_rate
            * mc_learn_core::drift::STRENGTH;
        assert!(
            correction
                .iter()
                .all(|&c| (f64::from(c) - per_step).abs() < 1e-6),
            "{per_step} vs {:?}",
            &correction[..3]
        );

        // A restart resumes the round with the same correction.
        let (_, saved) = fx.saves.last().cloned().unwrap();
        let spec = learning.runs[&id].spec.clone();
        let mut restarted = Learning::new(key(0));
        restarted.restore(&[(id.to_string(), saved)]);
        let mut fx = Effects::default();
        restarted.observe(vec![(id, spec)], 2, &mut fx);
        assert_eq!(correction_of(&fx.jobs[0]), Some(correction));

        // Without drift correction no job carries one.
        let mut plain = Learning::new(key(0));
        let (id, _) = start(&mut plain, request(Rule::FedAvg));
        let mut fx = play_round(
            &mut plain,
            id,
            0,
            &[],
            [
                (moments(1.0), 300),
                (moments(2.0), 300),
                (moments(3.0), 300),
            ],
        );
        let (base, _, _) = update_job(&mut fx);
        let fx = play_round(
            &mut plain,
            id,
            1,
            &base,
            [(moved(0.03), 100), (moved(0.01), 100), (moved(-0.01), 100)],
        );
        assert_eq!(correction_of(&fx.jobs[0]), None);
    }

    #[test]
    fn bad_training_settings_are_refused() {
        let learning = Learning::new(key(0));
        let declare = |batch: Option<u32>, rate: Option<f64>| {
            let mut r = request(Rule::FedAvg);
            (r.batch_size, r.learning_rate) = (batch, rate);
            learning.declare(r, &NodeId::new("n0"), 0, 1)
        };
        for batch in [0, MAX_CAMPAIGN_BATCH + 1] {
            let error = declare(Some(batch), None).unwrap_err();
            assert!(
                matches!(&error, LearnError::Invalid(m) if m.contains("batch_size")),
                "{error}"
            );
        }
        for rate in [0.0, -1e-3, f64::NAN, f64::INFINITY, MAX_CAMPAIGN_LR * 1.01] {
            let error = declare(None, Some(rate)).unwrap_err();
            assert!(
                matches!(&error, LearnError::Invalid(m) if m.contains("learning_rate")),
                "{error}"
            );
        }
        assert!(declare(Some(MAX_CAMPAIGN_BATCH), Some(MAX_CAMPAIGN_LR)).is_ok());

        // A declaration that reaches the document with bad settings anyway
        // (another implementation, a hand-written entry) is only observed.
        let mut learning = Learning::new(key(0));
        let (id, mut spec) = learning
            .declare(request(Rule::FedAvg), &NodeId::new("n0"), 0, 1)
            .unwrap();
        spec.batch_size = 0;
        let mut fx = Effects::default();
        learning.observe(vec![(id, spec)], 0, &mut fx);
        assert!(fx.jobs.is_empty());
        let view = learning.view(&id.to_string()).unwrap();
        assert_eq!(view.state, CampaignState::Observing);
    }

    #[test]
    fn the_reference_count_survives_a_restart_and_older_progress_is_unusable() {
        let mut learning = Learning::new(key(0));
        let (id, _) = start(&mut learning, request(Rule::FedAvg));
        let fx = play_round(
            &mut learning,
            id,
            0,
            &[],
            [
                (moments(1.0), 300),
                (moments(2.0), 1000),
                (moments(3.0), 9000),
            ],
        );
        let (_, saved) = fx.saves.last().cloned().unwrap();
        let spec = learning.runs[&id].spec.clone();

        let mut restarted = Learning::new(key(0));
        restarted.restore(&[(id.to_string(), saved.clone())]);
        let mut fx = Effects::default();
        restarted.observe(vec![(id, spec.clone())], 2, &mut fx);
        let (_, _, plan) = update_job(&mut fx);
        assert_eq!(plan.steps, 32);
        assert!(close(plan.learning_rate, 0.01), "{}", plan.learning_rate);

        // Progress saved before the control variates existed (the last
        // field) does not decode: the campaign starts over rather than
        // resume without them.
        #[derive(Serialize)]
        struct Older {
            round: u32,
            completed: bool,
            moments: Option<Vec<f32>>,
            global: Vec<f32>,
            history: Vec<RoundRecord>,
            rejections: BTreeMap<String, u64>,
            reference_count: u64,
        }
        let snapshot: Snapshot = postcard::from_bytes(&saved).unwrap();
        let older = postcard::to_stdvec(&Older {
            round: snapshot.round,
            completed: snapshot.completed,
            moments: snapshot.moments,
            global: snapshot.global,
            history: snapshot.history,
            rejections: snapshot.rejections,
            reference_count: snapshot.reference_count,
        })
        .unwrap();
        assert!(postcard::from_bytes::<Snapshot>(&older).is_err());
        let mut restarted = Learning::new(key(0));
        restarted.restore(&[(id.to_string(), older)]);
        let mut fx = Effects::default();
        restarted.observe(vec![(id, spec)], 2, &mut fx);
        assert_eq!(fx.jobs[0].kind, TrainKind::Moments);
        assert_eq!(fx.jobs[0].round, 0);
    }

    /// Node `me`'s view of one round: its own result through `on_trained`,
    /// the other members' signed and offered (those in `from`) as if they
    /// came from the network.
    fn feed(
        node: &mut Learning,
        me: u8,
        id: CampaignId,
        round: u32,
        base: &[f32],
        from: &[(u8, Vec<f32>, u64)],
    ) -> Effects {
        let mut fx = Effects::default();
        for (i, weights, count) in from.iter().cloned() {
            if i == me {
                let result = TrainResult {
                    campaign: id,
                    round,
                    base: model_hash(base),
                    outcome: Ok((weights, count)),
                };
                node.on_trained(result, 1, &mut fx);
            } else {
                let signed =
                    update::sign(&key(i), id, round, model_hash(base), count, weights).unwrap();
                let _ = node.offer(signed, 1, &mut fx, false);
            }
        }
        fx
    }

    /// Hands every message in `fx.sends` addressed to `to` over to `node`,
    /// as sent by `from`; returns what `node` did.
    fn deliver(fx: &Effects, from: &str, to: &str, node: &mut Learning, now: Millis) -> Effects {
        let mut out = Effects::default();
        for (dest, message) in &fx.sends {
            if dest.as_str() == to {
                node.on_message(&NodeId::new(from), message.clone(), now, &mut out)
                    .unwrap();
            }
        }
        out
    }

    fn state_requests(fx: &Effects) -> Vec<String> {
        fx.sends
            .iter()
            .filter(|(_, m)| matches!(m, LearnMessage::StateRequest { .. }))
            .map(|(to, _)| to.to_string())
            .collect()
    }

    #[test]
    fn a_node_that_missed_rounds_catches_up_with_the_majority() {
        let mut asked = request(Rule::FedAvg);
        asked.drift_correction = Some(true);
        let mut a = Learning::new(key(0));
        let mut b = Learning::new(key(1));
        let (id, spec) = a.declare(asked, &NodeId::new("n0"), 0, 1).unwrap();
        for node in [&mut a, &mut b] {
            node.observe(vec![(id, spec.clone())], 0, &mut Effects::default());
        }
        let stats = [(0u8, 300u64, 1.0f32), (1, 1000, 2.0), (2, 9000, 3.0)];
        let all_moments: Vec<(u8, Vec<f32>, u64)> =
            stats.iter().map(|&(i, n, m)| (i, moments(m), n)).collect();
        feed(&mut a, 0, id, 0, &[], &all_moments);
        feed(&mut b, 1, id, 0, &[], &all_moments);
        let base: Vec<f32> = a.runs[&id].global.to_vec();
        let moved = |base: &[f32], d: f32| base.iter().map(|w| w + d).collect::<Vec<f32>>();
        let everyone = |base: &[f32]| -> Vec<(u8, Vec<f32>, u64)> {
            (0..3u8)
                .map(|i| (i, moved(base, 0.01 * f32::from(i)), 100))
                .collect()
        };
        feed(&mut a, 0, id, 1, &base, &everyone(&base));
        feed(&mut b, 1, id, 1, &base, &everyone(&base));
        assert_eq!(a.runs[&id].global, b.runs[&id].global);
        assert_eq!(a.runs[&id].round, 2);

        // Node 0 is down for rounds 2 and 3: the others close them at the
        // deadline without it.
        let deadline = (spec.round_deadline_s * 1000.0) as Millis;
        let mut now = 1;
        for round in [2, 3] {
            let base = b.runs[&id].global.to_vec();
            let others: Vec<_> = everyone(&base)
                .into_iter()
                .filter(|(i, ..)| *i != 0)
                .collect();
            feed(&mut b, 1, id, round, &base, &others);
            now += deadline + 1;
            b.on_tick(now, &mut Effects::default());
            assert_eq!(b.runs[&id].round, round + 1);
        }
        let ahead = b.runs[&id].global.to_vec();
        assert_ne!(a.runs[&id].global.to_vec(), ahead);

        // Back, node 0 hears round-4 updates. One member's word is not
        // enough, nor is a forged signature; two members' are.
        let signed = |i: u8| {
            update::sign(&key(i), id, 4, model_hash(&ahead), 100, moved(&ahead, 0.01)).unwrap()
        };
        let mut fx = Effects::default();
        a.offer(signed(1), now, &mut fx, true).unwrap();
        let mut forged = signed(2);
        forged.weights[0] += 1.0;
        forged.header.weights_hash = model_hash(&forged.weights);
        a.offer(forged, now, &mut fx, true).ok();
        assert!(
            state_requests(&fx).is_empty(),
            "no majority yet: {:?}",
            fx.sends
        );
        a.offer(signed(2), now, &mut fx, true).unwrap();
        let mut asked = state_requests(&fx);
        assert_eq!(asked.len(), 1, "one member is asked");
        if asked[0] != "n1" {
            // The other member asked first (key order) does not answer in
            // time: node 0 asks the next.
            let mut retry = Effects::default();
            a.on_tick(now + deadline, &mut retry);
            asked = state_requests(&retry);
            fx = retry;
        }
        assert_eq!(asked, vec!["n1".to_string()]);

        // A state nobody asked for, or that no majority signed, is refused.
        let mut stray = Effects::default();
        let unasked = LearnMessage::StateChunk {
            campaign: id.0,
            round: 4,
            chunk: Vec::new(),
        };
        assert!(matches!(
            a.on_message(&NodeId::new("n2"), unasked, now, &mut stray),
            Err(LearnError::Rejected(_))
        ));

        // Node 1 answers; node 0 takes its state, offers the updates it
        // kept and trains round 4 from the majority's model.
        let answer = deliver(&fx, "n0", "n1", &mut b, now);
        assert!(!answer.sends.is_empty(), "node 1 sends its state");
        let mut caught = deliver(&answer, "n1", "n0", &mut a, now);
        let view = a.view(&id.to_string()).unwrap();
        assert_eq!(view.current_round, 4);
        assert_eq!(view.model_hash, Some(model_hash(&ahead).to_string()));
        assert_eq!(view.caught_up.len(), 1);
        assert_eq!(
            (view.caught_up[0].from_round, view.caught_up[0].to_round),
            (2, 4)
        );
        assert_eq!(
            a.runs[&id].collector.accepted().count(),
            2,
            "the kept updates"
        );
        let job = caught.jobs.remove(0);
        assert_eq!(job.round, 4);
        let (job_base, _, plan) = update_job(&mut Effects {
            jobs: vec![job.clone()],
            ..Effects::default()
        });
        assert_eq!(&job_base[..], &ahead[..]);
        // The control variates came with the state: node 0 is corrected as
        // node 1 would correct it.
        let expected = b.runs[&id]
            .controls
            .as_ref()
            .unwrap()
            .step_correction(&key(0).verifying_key().to_bytes(), plan.learning_rate);
        assert!(expected.is_some());
        assert_eq!(correction_of(&job), expected);

        // A result of training on the old base, finishing late, is ignored.
        let mut late = Effects::default();
        a.on_trained(
            TrainResult {
                campaign: id,
                round: 4,
                base: model_hash(&base),
                outcome: Ok((moved(&base, 0.5), 100)),
            },
            now,
            &mut late,
        );
        assert!(a.runs[&id].own_update.is_none());

        // Both finish the campaign on the same model.
        let mine = moved(&ahead, 0.0);
        let done = feed(&mut a, 0, id, 4, &ahead, &[(0, mine.clone(), 100)]);
        deliver(&done, "n0", "n1", &mut b, now);
        let mut fx_b = Effects::default();
        b.offer(signed(2), now, &mut fx_b, true).unwrap();
        b.on_trained(
            TrainResult {
                campaign: id,
                round: 4,
                base: model_hash(&ahead),
                outcome: Ok((moved(&ahead, 0.01), 100)),
            },
            now,
            &mut fx_b,
        );
        assert!(a.runs[&id].completed && b.runs[&id].completed);
        assert_eq!(a.runs[&id].global, b.runs[&id].global);
    }
}
