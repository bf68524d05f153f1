//! What the core answers: API requests that are not staged writes, the
//! status report, and the glue between the knowledge documents and the
//! learning campaigns (declarations are read from the documents, round
//! records written to them).

use mc_crdt::Json;
use mc_protocols::{DocId, Message};
use rand::Rng;

use crate::{
    ApiError, ApiRequest, ApiResponse, CampaignSpec, CampaignSummary, KnowledgeStatus, LearnError,
    LearningStatus, Node, Output, PeerStatus, Status, StoreOp, learning, store, validate_key,
};

impl Node {
    pub(crate) fn on_api(&mut self, request: ApiRequest) -> Result<ApiResponse, ApiError> {
        let doc_error = |e: mc_crdt::Error| ApiError::Document(e.to_string());
        match request {
            ApiRequest::Put { .. } | ApiRequest::Delete { .. } => Err(ApiError::Document(
                "writes are staged by handle, never answered here".into(),
            )),
            ApiRequest::Get { key } => {
                validate_key(&key)?;
                match self.docs.get(&key).map_err(doc_error)? {
                    Some(entry) => Ok(ApiResponse::Entry(entry)),
                    None => Err(ApiError::NotFound(key)),
                }
            }
            ApiRequest::List { prefix } => Ok(ApiResponse::Entries(
                self.docs.list(&prefix).map_err(doc_error)?,
            )),
            ApiRequest::Status => Ok(ApiResponse::Status(Box::new(self.status()))),
            ApiRequest::ListDocuments => Ok(ApiResponse::Documents(self.docs.infos())),
            ApiRequest::ExportDocument { id } => id
                .parse::<DocId>()
                .ok()
                .and_then(|doc| self.docs.export(&doc))
                .map(ApiResponse::DocumentBytes)
                .ok_or(ApiError::UnknownDocument(id)),
            ApiRequest::CreateCampaign(request) => {
                let seed = self.rng.next_u64();
                let (id, spec) = self
                    .learning
                    .declare(*request, &self.id, self.now, seed)
                    .map_err(ApiError::Learn)?;
                let value =
                    Json::from_serialize(&spec).map_err(|e| ApiError::Document(e.to_string()))?;
                let key = format!("{}{id}", learning::CAMPAIGN_PREFIX);
                self.docs
                    .put(&key, &value, self.id.as_str(), self.now)
                    .map_err(doc_error)?;
                self.batch.changed = true;
                // Start at once rather than at the next tick.
                self.scan_campaigns();
                self.learning
                    .view(&id.to_string())
                    .map(|v| ApiResponse::Campaign(Box::new(v)))
                    .map_err(ApiError::Learn)
            }
            ApiRequest::GetCampaign { id } => {
                self.scan_campaigns();
                self.learning
                    .view(&id)
                    .map(|v| ApiResponse::Campaign(Box::new(v)))
                    .map_err(ApiError::Learn)
            }
            ApiRequest::ListCampaigns => {
                self.scan_campaigns();
                Ok(ApiResponse::Campaigns(self.learning.views()))
            }
            ApiRequest::SubmitUpdate { campaign, bytes } => {
                let update =
                    mc_learn_core::SignedUpdate::decode(&bytes, learning::MAX_UPDATE_BYTES)
                        .map_err(|e| ApiError::Learn(LearnError::Malformed(e.to_string())))?;
                if let Some(path) = campaign
                    && path != update.header.campaign.to_string()
                {
                    return Err(ApiError::Learn(LearnError::WrongCampaign {
                        addressed: path,
                        update: update.header.campaign.to_string(),
                    }));
                }
                let mut fx = learning::Effects::default();
                let relayed = update.clone();
                let result = self.learning.offer(update, self.now, &mut fx, false);
                if result.is_ok() {
                    self.learning.relay(&relayed, &mut fx);
                }
                self.apply_learning(fx);
                result
                    .map(|()| ApiResponse::UpdateAccepted)
                    .map_err(ApiError::Learn)
            }
        }
    }

    /// Reads new campaign declarations from the knowledge document, when it
    /// changed since the last look.
    pub(crate) fn scan_campaigns(&mut self) {
        if self.config.learning_tick_ms.is_none() {
            return;
        }
        let heads = self.docs.heads();
        if heads == self.campaigns_seen_at {
            return;
        }
        self.campaigns_seen_at = heads;
        let entries = match self.docs.list(learning::CAMPAIGN_PREFIX) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "cannot list campaigns");
                return;
            }
        };
        let mut declared = Vec::new();
        for entry in entries {
            let Some(id) = entry
                .key
                .strip_prefix(learning::CAMPAIGN_PREFIX)
                .and_then(learning::parse_campaign_id)
            else {
                continue; // round records and other sub-keys
            };
            if self.learning.knows(&id) {
                continue;
            }
            match entry.value.parse_into::<CampaignSpec>() {
                Ok(spec) => declared.push((id, spec)),
                Err(error) => tracing::warn!(campaign = %id, %error, "unreadable campaign"),
            }
        }
        if declared.is_empty() {
            return;
        }
        let mut fx = learning::Effects::default();
        self.learning.observe(declared, self.now, &mut fx);
        self.apply_learning(fx);
    }

    /// Carries out what the learning part asked for.
    pub(crate) fn apply_learning(&mut self, fx: learning::Effects) {
        for (to, message) in fx.sends {
            if self.peers.contains_key(&to) {
                self.send(&to, &Message::Learn(message));
            }
        }
        for job in fx.jobs {
            self.outputs.push_back(Output::Train(job));
        }
        for (key, value) in fx.writes {
            let value = Json::from(value);
            match self.docs.put(&key, &value, self.id.as_str(), self.now) {
                Ok(()) => self.batch.changed = true,
                Err(error) => tracing::warn!(%key, %error, "cannot record a round"),
            }
        }
        if !fx.saves.is_empty() {
            let ops = fx
                .saves
                .into_iter()
                .map(|(id, value)| StoreOp::Put {
                    key: format!("{}{id}", store::CAMPAIGN_STATE_PREFIX),
                    value,
                })
                .collect();
            self.outputs.push_back(Output::Persist(ops));
        }
        for model in fx.finished {
            self.outputs.push_back(Output::ModelReady(model));
        }
        for (campaign, record) in fx.closed {
            self.outputs
                .push_back(Output::RoundClosed { campaign, record });
        }
    }

    /// The status report for `GET /status`.
    pub fn status(&mut self) -> Status {
        let stats = self.docs.knowledge_stats();
        let peers = self
            .peers
            .iter()
            .map(|(id, peer)| PeerStatus {
                peer_id: id.to_string(),
                region: peer.region.clone(),
                last_sync_ms: peer.last_sync_ms,
                in_sync: peer.in_sync,
            })
            .collect();
        Status {
            peer_id: self.id.to_string(),
            region: self.config.region.clone(),
            version: self.config.version.clone(),
            uptime_s: self.now.saturating_sub(self.started_at) as f64 / 1000.0,
            listen_addrs: self.listen_addrs.clone(),
            gossip_enabled: self.config.gossip,
            peers,
            knowledge: KnowledgeStatus {
                entries: stats.entries,
                heads: stats.heads,
                changes: stats.changes,
                doc_bytes: stats.saved_bytes,
            },
            counters: self.counters.clone(),
            learning: LearningStatus {
                enabled: self.config.learning_tick_ms.is_some(),
                public_key: self.learning.public_key_hex(),
                campaigns: self
                    .learning
                    .views()
                    .into_iter()
                    .map(|v| CampaignSummary {
                        id: v.id,
                        model: v.spec.model.name,
                        state: v.state,
                        round: v.current_round,
                        total_rounds: v.total_rounds,
                    })
                    .collect(),
            },
        }
    }
}
