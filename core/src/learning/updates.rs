//! What a node receives for its campaigns: update chunks, evidence and
//! campaign states from peers, updates handed over by the API, and the
//! relaying of the latter.

use super::*;

impl Learning {
    /// A learning message from a peer.
    pub(crate) fn on_message(
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
                if evidence.first.header.round != run.round() {
                    return Ok(());
                }
                run.campaign
                    .offer_evidence(evidence)
                    .map_err(LearnError::Rejected)?;
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
    pub(crate) fn offer(
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
            if round > run.round() {
                return Ok(()); // kept for when this node gets there
            }
            run.count(&Rejection::WrongBase);
            // Noted for catch-up (the sighting above).
            return Err(LearnError::Rejected(Rejection::WrongBase));
        }
        if !run.completed() && round == run.round() + 1 {
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
        if run.completed() || round != run.round() {
            let rejection = Rejection::WrongRound {
                expected: run.round(),
                got: round,
            };
            run.count(&rejection);
            return Err(LearnError::Rejected(rejection));
        }
        match run.campaign.offer(update) {
            Ok(_) => {
                self.maybe_close(id, now, fx);
                Ok(())
            }
            Err(rejection) => {
                run.count(&rejection);
                if rejection == Rejection::Equivocation
                    && let Some(evidence) = run.campaign.collector().evidence().last().copied()
                {
                    run.evidence.insert(evidence.author(), evidence);
                    let bytes = postcard::to_stdvec(&evidence).unwrap_or_default();
                    for node in run.keys.values() {
                        fx.sends.push((
                            node.clone(),
                            LearnMessage::Evidence {
                                campaign: id.0,
                                round: run.round(),
                                evidence: bytes.clone(),
                            },
                        ));
                    }
                    self.maybe_close(id, now, fx);
                }
                Err(LearnError::Rejected(rejection))
            }
        }
    }

    /// Sends an update that the API accepted (a member without a node of
    /// its own handed it to this one) on to every other participant, as if
    /// its author had sent it to each.
    pub(crate) fn relay(&self, update: &SignedUpdate, fx: &mut Effects) {
        if let Some(run) = self.runs.get(&update.header.campaign) {
            fx.sends.extend(run.send_update(update, &self.me, None));
        }
    }
}
