//! Leaderless federated learning, as a part of the sans-IO core.
//!
//! A campaign is created on any node and written to the knowledge document
//! under `campaigns/<id>`, so it reaches every region by gossip and
//! anti-entropy. Every participant that sees it runs the same rounds on its
//! own; there is no coordinator.
//!
//! # Rounds
//!
//! The rounds are [`mc_learn_core::campaign::Campaign`], the one state
//! machine the benchmark drives too; this module adds what only a node has:
//! peers and chunks, deadlines, updates that arrive early or for campaigns
//! not yet seen, catch-up, persistence and round records.
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
//! round, `local_epochs · ⌈reference count / batch_size⌉` (a [`StepPlan`](mc_learn_core::plan::StepPlan):
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
//! Every node checks what it receives with a
//! [`Collector`](mc_learn_core::round::Collector) (signature,
//! membership, round, base, shape, finiteness, norm, duplicates,
//! equivocation) and closes the round when every participant has spoken or at
//! its deadline. Aggregation depends only on the accepted set, so nodes that
//! accepted the same updates hold byte-identical models; each round's
//! accepted-set digest and model hash are recorded (and written to the
//! document under `campaigns/<id>/rounds/…`) so divergence is visible.

use std::collections::{BTreeMap, BTreeSet};

use mc_learn_core::aggregate::Rule;
use mc_learn_core::campaign::{Campaign, CampaignError, Next, Progress, Settings};
use mc_learn_core::chunk::{self, Chunk, Reassembler};
use mc_learn_core::ed25519_dalek::SigningKey;
pub use mc_learn_core::init::Init;
use mc_learn_core::plan::LocalTraining;
use mc_learn_core::round::{Evidence, Rejection};
use mc_learn_core::scaffold::{ControlVariates, MemberVariate};
use mc_learn_core::{AuthorKey, CampaignId, Digest, ModelSchema, SignedUpdate, model_hash};
use mc_protocols::{LearnMessage, NodeId};
use serde::{Deserialize, Serialize};

use super::Millis;

mod catch_up;
mod job;
mod run;
mod snapshot;
mod spec;
#[cfg(test)]
mod tests;
mod updates;
mod view;

pub use catch_up::{CatchUpRecord, MAX_STATE_BYTES, quorum};
pub use job::{FinishedModel, TrainJob, TrainKind, TrainResult};
use run::Run;
use snapshot::{SavedControls, Snapshot};
pub use spec::{
    CampaignRequest, CampaignSpec, ModelDigest, Participant, check_learning_rate,
    parse_campaign_id, parse_key,
};
use spec::{check_final_rate_fraction, check_local_training};
pub use view::{CampaignState, CampaignView, ClosedBy, LearnError, RoundRecord};

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
/// The last round's learning rate as a fraction of round 1's, when a
/// request names none.
pub const DEFAULT_FINAL_RATE_FRACTION: f64 = mc_learn_core::plan::DEFAULT_FINAL_RATE_FRACTION;
/// How a campaign draws its starting weights when a request names none
/// (see [`mc_learn_core::init::Init`]).
pub const DEFAULT_CAMPAIGN_INIT: Init = mc_learn_core::init::DEFAULT_INIT;
/// Largest batch size a campaign may ask for.
pub const MAX_CAMPAIGN_BATCH: u32 = 65_536;
/// Largest learning rate a campaign may ask for.
pub const MAX_CAMPAIGN_LR: f64 = 10.0;

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
    /// Rounds closed.
    pub closed: Vec<(CampaignId, RoundRecord)>,
    /// Campaign progress to persist: (campaign, encoded [`Snapshot`]).
    pub saves: Vec<(CampaignId, Vec<u8>)>,
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
        let final_rate_fraction = request
            .final_rate_fraction
            .unwrap_or(DEFAULT_FINAL_RATE_FRACTION);
        check_final_rate_fraction(final_rate_fraction).map_err(LearnError::Invalid)?;
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
                .unwrap_or(mc_learn_core::scaffold::default_for(request.aggregation)),
            final_rate_fraction,
            init: request.init.unwrap_or(DEFAULT_CAMPAIGN_INIT),
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
            if let Err(error) = check_local_training(spec.batch_size, spec.learning_rate)
                .and_then(|()| check_final_rate_fraction(spec.final_rate_fraction))
            {
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
            let mut run = match Run::start(id, spec.clone(), keys, now) {
                Ok(run) => run,
                Err(error) => {
                    tracing::warn!(campaign = %id, %error, "cannot start campaign");
                    self.observed.insert(id, spec);
                    continue;
                }
            };
            if let Some(snapshot) = self.resume.remove(&id)
                && let Err(error) = run.resume(snapshot)
            {
                tracing::warn!(campaign = %id, %error, "cannot resume; starting over");
            }
            if run.completed() {
                fx.finished.extend(run.finished());
            } else {
                tracing::info!(campaign = %id, round = run.round(), "campaign round started");
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
        if run.completed()
            || run.round() != result.round
            || run.own_update.is_some()
            || result.base != run.campaign.base_hash()
        {
            return; // the round closed without us, or we caught up meanwhile
        }
        let (weights, samples) = match result.outcome {
            Ok(ok) => ok,
            Err(error) => {
                tracing::warn!(campaign = %run.id, round = run.round(), %error, "local training failed; not contributing this round");
                return;
            }
        };
        let base = run.campaign.base_hash();
        let update = match mc_learn_core::update::sign(
            &self.key,
            run.id,
            run.round(),
            base,
            samples,
            weights,
        ) {
            Ok(u) => u,
            Err(error) => {
                tracing::error!(campaign = %run.id, %error, "cannot sign the local update");
                return;
            }
        };
        if let Err(rejection) = run.campaign.offer(update.clone()) {
            tracing::warn!(campaign = %run.id, round = run.round(), %rejection, "own update refused by own collector");
        }
        run.own_update = Some(update);
        let sends = run.send_own(&self.me, None);
        fx.sends.extend(sends);
        self.maybe_close(result.campaign, now, fx);
    }

    /// A peer connected: resend our update for the current round of every
    /// campaign it takes part in (it may have missed it).
    pub(super) fn on_peer_connected(&mut self, peer: &NodeId, fx: &mut Effects) {
        let me = self.me;
        for run in self.runs.values() {
            if !run.completed() && run.keys.values().any(|n| n == peer) {
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
            if run.completed() {
                return;
            }
            let deadline = run.round_started + (run.spec.round_deadline_s * 1000.0) as Millis;
            let complete = run.campaign.collector().is_complete();
            if !complete && now < deadline {
                return;
            }
            run.close(complete, now, &me, fx);
            if run.completed() {
                return;
            }
            // Updates that arrived early may complete the new round at once.
            let early = std::mem::take(&mut run.early);
            for update in early {
                if update.header.round != run.round() || run.sight(&update, &me, now, fx) {
                    continue;
                }
                if let Err(rejection) = run.campaign.offer(update) {
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
