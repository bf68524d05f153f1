//! One campaign on one node: its round, its collector, its model, and the
//! steps from round to round.

use super::*;

#[derive(Debug)]
pub(super) struct Run {
    pub(super) id: CampaignId,
    pub(super) spec: CampaignSpec,
    pub(super) keys: BTreeMap<AuthorKey, NodeId>,
    pub(super) round: u32,
    pub(super) completed: bool,
    pub(super) collector: Collector,
    pub(super) round_started: Millis,
    pub(super) own_update: Option<SignedUpdate>,
    pub(super) moments: Option<Arc<[f32]>>,
    /// The median accepted sample count of round 0 (0 before it closed).
    pub(super) reference_count: u64,
    /// Control variates once round 0 closed, if the campaign corrects drift.
    pub(super) controls: Option<ControlVariates>,
    pub(super) global: Arc<[f32]>,
    pub(super) history: Vec<RoundRecord>,
    /// Updates that arrived for the next round before this node got there.
    pub(super) early: Vec<SignedUpdate>,
    pub(super) rejections: BTreeMap<String, u64>,
    pub(super) evidence: BTreeMap<AuthorKey, Evidence>,
    /// Sightings of the campaign ahead or elsewhere ([`catch_up`]).
    pub(super) catch_up: catch_up::Tracker,
}

impl Run {
    /// The current model round's local work.
    pub(super) fn plan(&self) -> StepPlan {
        self.spec
            .local_training()
            .plan(self.reference_count, self.round)
    }

    pub(super) fn job(&self, me: &AuthorKey) -> TrainJob {
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
            closed_by: if complete {
                ClosedBy::Complete
            } else {
                ClosedBy::Deadline
            },
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
        fx.closed.push((self.id, record.clone()));
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

    pub(super) fn finished(&self) -> Option<FinishedModel> {
        let moments = self.moments.as_deref()?;
        Some(FinishedModel {
            campaign: self.id,
            model: self.spec.model.clone(),
            moments: moments.to_vec(),
            weights: self.global.to_vec(),
            model_hash: model_hash(&self.global).to_string(),
        })
    }

    pub(super) fn snapshot(&self) -> Vec<u8> {
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
    pub(super) fn resume(&mut self, snapshot: Snapshot) -> Result<(), String> {
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

    pub(super) fn view(&self) -> CampaignView {
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

pub(super) fn round_config(
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
