//! One campaign on one node: its round, its collector, its model, and the
//! steps from round to round.

use super::*;

#[derive(Debug)]
pub(super) struct Run {
    pub(super) id: CampaignId,
    pub(super) spec: CampaignSpec,
    pub(super) keys: BTreeMap<AuthorKey, NodeId>,
    /// The rounds themselves: collector, moments, model, variates.
    pub(super) campaign: Campaign,
    pub(super) round_started: Millis,
    pub(super) own_update: Option<SignedUpdate>,
    pub(super) history: Vec<RoundRecord>,
    /// Updates that arrived for the next round before this node got there.
    pub(super) early: Vec<SignedUpdate>,
    pub(super) rejections: BTreeMap<String, u64>,
    pub(super) evidence: BTreeMap<AuthorKey, Evidence>,
    /// Sightings of the campaign ahead or elsewhere ([`catch_up`]).
    pub(super) catch_up: catch_up::Tracker,
}

impl Run {
    /// A run of campaign `id` at the start of round 0.
    pub(super) fn start(
        id: CampaignId,
        spec: CampaignSpec,
        keys: BTreeMap<AuthorKey, NodeId>,
        now: Millis,
    ) -> Result<Self, CampaignError> {
        let campaign = Campaign::new(spec.settings(id, &keys))?;
        Ok(Self {
            id,
            spec,
            keys,
            campaign,
            round_started: now,
            own_update: None,
            history: Vec::new(),
            early: Vec::new(),
            rejections: BTreeMap::new(),
            evidence: BTreeMap::new(),
            catch_up: catch_up::Tracker::default(),
        })
    }

    pub(super) fn round(&self) -> u32 {
        self.campaign.round()
    }

    pub(super) fn completed(&self) -> bool {
        self.campaign.completed()
    }

    pub(super) fn job(&self, me: &AuthorKey) -> TrainJob {
        TrainJob {
            campaign: self.id,
            round: self.round(),
            model: self.spec.model.clone(),
            kind: self.campaign.work(me),
        }
    }

    pub(super) fn count(&mut self, rejection: &Rejection) {
        *self
            .rejections
            .entry(rejection.name().to_string())
            .or_default() += 1;
    }

    /// Our update for the current round, in chunks, for every other
    /// participant (or only `to`).
    pub(super) fn send_own(
        &self,
        me: &AuthorKey,
        to: Option<&NodeId>,
    ) -> Vec<(NodeId, LearnMessage)> {
        match &self.own_update {
            Some(update) => self.send_update(update, me, to),
            None => Vec::new(),
        }
    }

    /// `update` in chunks for every participant but `me` and its author
    /// (or only `to`).
    pub(super) fn send_update(
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

    pub(super) fn close(&mut self, complete: bool, now: Millis, me: &AuthorKey, fx: &mut Effects) {
        let closed = match self.campaign.close() {
            Ok(closed) => closed,
            Err(error) => {
                tracing::error!(campaign = %self.id, %error, "cannot open the next round");
                return;
            }
        };
        if let Some(error) = &closed.correction_stopped {
            tracing::error!(campaign = %self.id, %error, "drift correction turned off");
        }
        if let Some(error) = &closed.error
            && closed.round == 0
        {
            // Without moments no model round can run; try again.
            tracing::warn!(campaign = %self.id, %error, "moments round produced nothing; repeating it");
        }
        let record = RoundRecord {
            round: closed.round,
            accepted: closed.accepted,
            missing: closed.missing,
            excluded: self.evidence.len(),
            accepted_digest: closed.accepted_digest.to_string(),
            model_hash: closed.model_hash.to_string(),
            closed_by: if complete {
                ClosedBy::Complete
            } else {
                ClosedBy::Deadline
            },
            duration_ms: now.saturating_sub(self.round_started),
            error: closed.error.as_ref().map(ToString::to_string),
        };
        tracing::info!(campaign = %self.id, round = record.round, accepted = record.accepted, missing = record.missing, closed_by = %record.closed_by, "round closed");
        fx.writes.push((
            format!(
                "{CAMPAIGN_PREFIX}{}/rounds/{:06}/{}",
                self.id,
                record.round,
                hex::encode(&me[..8])
            ),
            serde_json::json!({
                "accepted": record.accepted,
                "accepted_digest": record.accepted_digest,
                "model_hash": record.model_hash,
            }),
        ));
        fx.closed.push((self.id, record.clone()));
        self.history.push(record);
        fx.saves.push((self.id, self.snapshot()));
        match closed.next {
            Next::Completed => fx.finished.extend(self.finished()),
            Next::Round(_) => {
                self.round_started = now;
                self.own_update = None;
                fx.jobs.push(self.job(me));
            }
        }
    }

    pub(super) fn finished(&self) -> Option<FinishedModel> {
        let moments = self.campaign.moments()?;
        let global = self.campaign.global();
        Some(FinishedModel {
            campaign: self.id,
            model: self.spec.model.clone(),
            moments: moments.to_vec(),
            weights: global.to_vec(),
            model_hash: model_hash(global).to_string(),
        })
    }

    pub(super) fn snapshot(&self) -> Vec<u8> {
        let progress = self.campaign.progress();
        let snapshot = Snapshot {
            round: progress.round,
            completed: progress.completed,
            moments: progress.moments,
            global: progress.global,
            history: self.history.clone(),
            rejections: self.rejections.clone(),
            reference_count: progress.reference_count,
            controls: progress.controls.as_ref().map(SavedControls::of),
        };
        postcard::to_stdvec(&snapshot).unwrap_or_default()
    }

    /// Continues from saved progress: the round in progress starts again
    /// (its updates were not saved; peers resend theirs on reconnect).
    pub(super) fn resume(&mut self, snapshot: Snapshot) -> Result<(), CampaignError> {
        let progress = Progress {
            round: snapshot.round,
            completed: snapshot.completed,
            moments: snapshot.moments,
            reference_count: snapshot.reference_count,
            global: snapshot.global,
            controls: snapshot.controls.map(SavedControls::into_variates),
        };
        self.campaign = Campaign::resume(self.campaign.settings().clone(), progress)?;
        self.history = snapshot.history;
        self.rejections = snapshot.rejections;
        Ok(())
    }

    pub(super) fn view(&self) -> CampaignView {
        CampaignView {
            id: self.id.to_string(),
            state: if self.completed() {
                CampaignState::Completed
            } else {
                CampaignState::Running
            },
            current_round: self.round(),
            total_rounds: self.spec.rounds + 1,
            spec: self.spec.clone(),
            rounds: self.history.clone(),
            rejections: self.rejections.clone(),
            equivocators: self.evidence.keys().map(hex::encode).collect(),
            model_hash: (!self.campaign.global().is_empty())
                .then(|| model_hash(self.campaign.global()).to_string()),
            reference_count: self.campaign.reference_count(),
            local_steps: self.campaign.local_steps(),
            round_learning_rate: self.campaign.plan().map(|plan| plan.learning_rate),
            caught_up: self.catch_up.done.clone(),
        }
    }
}
