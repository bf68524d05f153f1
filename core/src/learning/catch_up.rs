//! Catch-up: a participant that fell behind a campaign (it was down for
//! some rounds) or whose model diverged (it closed a round with another
//! accepted set than the others, say cut off from them until the deadline)
//! rejoins the model the majority is training, instead of finishing the
//! campaign on a model of its own.
//!
//! # When
//!
//! Every update signs its round and the hash of the round's base model. A
//! node that receives from another member a validly signed update for a
//! round beyond the next one (the next one it keeps as usual, see
//! `Run::early`), or for its own round on another base, records that
//! statement: a *sighting* of (round, base). Once [`quorum`] distinct members,
//! a majority of the participants, signed the same (round, base), it asks
//! one of them for its state ([`LearnMessage::StateRequest`]).
//!
//! # What is checked
//!
//! The answer, a [`CatchUpState`] sent in chunks like an update
//! ([`LearnMessage::StateChunk`]), is adopted only if its round and the hash
//! of its model are a sighting with a quorum: the model a majority signed
//! updates on. The pooled moments, reference count and control variates
//! that come with it are not signed by anyone; honest members that accepted
//! the same sets hold them byte for byte, and a member lying about them can
//! only spoil this node's own later updates, which every other node checks
//! like any update (norm bound, robust rule). Without an answer within the
//! round deadline, the node asks the next member that signed.
//!
//! Then the node opens that round on the adopted base, offers the updates
//! it kept for it, and trains like everyone else. A training job still
//! running on the old base is ignored when it finishes
//! ([`TrainResult::base`](super::TrainResult)).
//!
//! # Limits
//!
//! A campaign that completed elsewhere before this node caught up cannot be
//! joined: no update is signed on the final model, so nothing attests it.
//! The node then finishes on its own, and its round records show where it
//! diverged. With half of the participants or more down, no quorum forms.

use std::collections::{BTreeMap, BTreeSet};

use mc_learn_core::campaign::{Campaign, Progress};
use mc_learn_core::chunk::{self, Chunk};
use mc_learn_core::{AuthorKey, CampaignId, Digest, SignedUpdate, model_hash};
use mc_protocols::{LearnMessage, NodeId};
use serde::{Deserialize, Serialize};

use super::{Effects, LearnError, Learning, Millis, Run, SavedControls, UPDATE_CHUNK_BYTES};

/// Largest encoded campaign state accepted from a peer.
pub const MAX_STATE_BYTES: usize = 256 << 20;

/// Distinct members, never counting the node itself, whose signed updates
/// must agree on a (round, base) before a node adopts it: a majority of
/// the `participants`, or every other member where that is fewer.
pub fn quorum(participants: usize) -> usize {
    (participants / 2 + 1)
        .min(participants.saturating_sub(1))
        .max(1)
}

/// One catch-up, as the campaign view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatchUpRecord {
    /// The round this node was at.
    pub from_round: u32,
    /// The round it adopted the state of.
    pub to_round: u32,
    /// The member that sent the state.
    pub source: String,
    /// Hash of the adopted model (hex).
    pub model_hash: String,
}

/// A campaign's state at the start of a model round, as one member sends
/// it to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct CatchUpState {
    round: u32,
    moments: Vec<f32>,
    reference_count: u64,
    global: Vec<f32>,
    controls: Option<SavedControls>,
}

/// What a run keeps for catching up.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    /// (round, base hash) → members that signed an update for it, each
    /// member at most once per round.
    sightings: BTreeMap<(u32, Digest), BTreeSet<AuthorKey>>,
    /// Those updates, to offer once the node is in their round.
    kept: Vec<SignedUpdate>,
    /// The state asked for.
    pending: Option<Pending>,
    /// (node, round) pairs this node already sent its state to.
    served: BTreeSet<(NodeId, u32)>,
    /// Catch-ups done.
    pub(super) done: Vec<CatchUpRecord>,
}

#[derive(Debug)]
struct Pending {
    round: u32,
    base: Digest,
    asked: BTreeSet<NodeId>,
    at: Millis,
}

impl Tracker {
    /// The members that signed (round, base), if they are a quorum.
    fn attested(&self, round: u32, base: Digest, quorum: usize) -> Option<&BTreeSet<AuthorKey>> {
        self.sightings
            .get(&(round, base))
            .filter(|authors| authors.len() >= quorum)
    }
}

impl Run {
    /// Whether a member's update says that the campaign is somewhere this
    /// node is not: a round beyond the next, or this round on another base.
    fn is_elsewhere(&self, update: &SignedUpdate) -> bool {
        let round = update.header.round;
        !self.completed()
            && round >= 1
            && round <= self.spec.rounds
            && (round > self.round() + 1
                || (round == self.round() && update.header.base_hash != self.campaign.base_hash()))
    }

    /// Asks the next member that signed the pending (round, base).
    fn ask_next(&mut self, now: Millis, fx: &mut Effects) {
        let quorum = quorum(self.keys.len());
        let Some(pending) = &mut self.catch_up.pending else {
            return;
        };
        let Some(authors) = self
            .catch_up
            .sightings
            .get(&(pending.round, pending.base))
            .filter(|a| a.len() >= quorum)
        else {
            self.catch_up.pending = None;
            return;
        };
        let nodes: Vec<&NodeId> = authors.iter().filter_map(|a| self.keys.get(a)).collect();
        if nodes.iter().all(|n| pending.asked.contains(*n)) {
            pending.asked.clear(); // everyone asked once: start over
        }
        let Some(node) = nodes.into_iter().find(|n| !pending.asked.contains(*n)) else {
            return;
        };
        tracing::info!(campaign = %self.id, round = self.campaign.round(), target = pending.round, peer = %node, "behind the campaign's majority; asking for its state");
        pending.asked.insert(node.clone());
        pending.at = now;
        fx.sends.push((
            node.clone(),
            LearnMessage::StateRequest {
                campaign: self.id.0,
                round: pending.round,
            },
        ));
    }

    /// This node's state, for a member that asked.
    fn state(&self) -> Option<CatchUpState> {
        let progress = self.campaign.progress();
        let moments = progress.moments?;
        (!progress.completed && progress.round >= 1).then(|| CatchUpState {
            round: progress.round,
            moments,
            reference_count: progress.reference_count,
            global: progress.global,
            controls: progress.controls.as_ref().map(SavedControls::of),
        })
    }

    /// Takes `state` as this node's own and opens its round.
    fn adopt(
        &mut self,
        state: CatchUpState,
        source: &NodeId,
        now: Millis,
        me: &AuthorKey,
        fx: &mut Effects,
    ) -> Result<(), String> {
        if state.round == 0 || state.controls.is_some() != self.spec.drift_correction {
            return Err("the state does not fit the campaign".into());
        }
        let progress = Progress {
            round: state.round,
            completed: false,
            moments: Some(state.moments),
            reference_count: state.reference_count,
            global: state.global,
            controls: state.controls.map(SavedControls::into_variates),
        };
        let campaign = Campaign::resume(self.campaign.settings().clone(), progress)
            .map_err(|e| e.to_string())?;
        let record = CatchUpRecord {
            from_round: self.round(),
            to_round: campaign.round(),
            source: source.to_string(),
            model_hash: model_hash(campaign.global()).to_string(),
        };
        tracing::info!(campaign = %self.id, from = record.from_round, to = record.to_round, peer = %source, model = %record.model_hash, "caught up with the campaign");
        self.campaign = campaign;
        self.own_update = None;
        self.round_started = now;
        self.catch_up.done.push(record);
        self.catch_up.pending = None;
        let round = self.round();
        self.catch_up.sightings.retain(|(r, _), _| *r > round);
        let kept = std::mem::take(&mut self.catch_up.kept);
        let (now_due, later): (Vec<_>, Vec<_>) = kept
            .into_iter()
            .filter(|u| u.header.round >= round)
            .partition(|u| u.header.round == round);
        self.catch_up.kept = later;
        self.early.retain(|u| u.header.round == round + 1);
        for update in now_due {
            if let Err(rejection) = self.campaign.offer(update) {
                self.count(&rejection);
            }
        }
        fx.saves.push((self.id, self.snapshot()));
        fx.jobs.push(self.job(me));
        Ok(())
    }
}

impl Run {
    /// Notes an update from another member that says the campaign is
    /// elsewhere than this node ([`Run::is_elsewhere`]); asks for the state
    /// once a quorum agrees. Returns whether the update was taken as a
    /// sighting.
    pub(super) fn sight(
        &mut self,
        update: &SignedUpdate,
        me: &AuthorKey,
        now: Millis,
        fx: &mut Effects,
    ) -> bool {
        if update.author == *me
            || !self.keys.contains_key(&update.author)
            || !self.is_elsewhere(update)
            || update.verify_signature().is_err()
        {
            return false;
        }
        let key = (update.header.round, update.header.base_hash);
        // One statement per member and round (a second, on another base,
        // replaces the first): what is held stays within members × rounds.
        for ((round, _), authors) in self.catch_up.sightings.iter_mut() {
            if *round == key.0 {
                authors.remove(&update.author);
            }
        }
        self.catch_up
            .sightings
            .retain(|_, authors| !authors.is_empty());
        self.catch_up
            .sightings
            .entry(key)
            .or_default()
            .insert(update.author);
        let limit = self.keys.len() * 4;
        if !self
            .catch_up
            .kept
            .iter()
            .any(|u| u.signed_header() == update.signed_header())
        {
            self.catch_up.kept.push(update.clone());
            if self.catch_up.kept.len() > limit {
                // Keep the latest rounds.
                self.catch_up
                    .kept
                    .sort_by_key(|u| std::cmp::Reverse(u.header.round));
                self.catch_up.kept.truncate(limit);
            }
        }
        let quorum = quorum(self.keys.len());
        let newer = self
            .catch_up
            .pending
            .as_ref()
            .is_none_or(|p| key.0 > p.round);
        if newer && self.catch_up.attested(key.0, key.1, quorum).is_some() {
            self.catch_up.pending = Some(Pending {
                round: key.0,
                base: key.1,
                asked: BTreeSet::new(),
                at: now,
            });
            self.ask_next(now, fx);
        }
        true
    }
}

impl Learning {
    /// Asks the next member where a state request went unanswered for a
    /// round deadline.
    pub(super) fn retry_catch_ups(&mut self, now: Millis, fx: &mut Effects) {
        for run in self.runs.values_mut() {
            let deadline = (run.spec.round_deadline_s * 1000.0) as Millis;
            if run
                .catch_up
                .pending
                .as_ref()
                .is_some_and(|p| now >= p.at + deadline)
            {
                run.ask_next(now, fx);
            }
        }
    }

    /// A member asked for this node's state: send it in chunks, once per
    /// member and round.
    pub(super) fn serve_state(&mut self, from: &NodeId, campaign: [u8; 16], fx: &mut Effects) {
        let Some(run) = self.runs.get_mut(&CampaignId(campaign)) else {
            return;
        };
        if !run.keys.values().any(|n| n == from) {
            return;
        }
        let Some(state) = run.state() else {
            return;
        };
        if !run.catch_up.served.insert((from.clone(), state.round)) {
            return;
        }
        let bytes = match postcard::to_stdvec(&state) {
            Ok(b) => b,
            Err(error) => {
                tracing::error!(campaign = %run.id, %error, "cannot encode the campaign state");
                return;
            }
        };
        let pieces = match chunk::split(&bytes, UPDATE_CHUNK_BYTES) {
            Ok(p) => p,
            Err(error) => {
                tracing::error!(campaign = %run.id, %error, "cannot chunk the campaign state");
                return;
            }
        };
        tracing::info!(campaign = %run.id, round = state.round, peer = %from, "sending the campaign state to a member that fell behind");
        for piece in pieces {
            fx.sends.push((
                from.clone(),
                LearnMessage::StateChunk {
                    campaign,
                    round: state.round,
                    chunk: piece.encode(),
                },
            ));
        }
    }

    /// A chunk of a state this node asked for.
    pub(super) fn on_state_chunk(
        &mut self,
        from: &NodeId,
        campaign: [u8; 16],
        chunk: &[u8],
        now: Millis,
        fx: &mut Effects,
    ) -> Result<(), LearnError> {
        let id = CampaignId(campaign);
        let me = self.me;
        let Some(run) = self.runs.get_mut(&id) else {
            return Ok(());
        };
        if run
            .catch_up
            .pending
            .as_ref()
            .is_none_or(|p| !p.asked.contains(from))
        {
            return Err(LearnError::StateRefused(
                "a campaign state this node did not ask for".into(),
            ));
        }
        let piece = Chunk::decode(chunk, UPDATE_CHUNK_BYTES + chunk::CHUNK_OVERHEAD)
            .map_err(|e| LearnError::Malformed(e.to_string()))?;
        let Some(bytes) = self
            .states
            .insert(from.clone(), piece)
            .map_err(|e| LearnError::Malformed(e.to_string()))?
        else {
            return Ok(());
        };
        let state: CatchUpState =
            postcard::from_bytes(&bytes).map_err(|e| LearnError::Malformed(e.to_string()))?;
        let hash = model_hash(&state.global);
        let quorum = quorum(run.keys.len());
        if state.round < run.round() || run.catch_up.attested(state.round, hash, quorum).is_none() {
            return Err(LearnError::StateRefused(format!(
                "campaign state for round {} with model {hash}, which no majority of members signed updates on",
                state.round
            )));
        }
        run.adopt(state, from, now, &me, fx)
            .map_err(LearnError::StateRefused)?;
        self.maybe_close(id, now, fx);
        Ok(())
    }
}
