//! A learning campaign in the engine: the organisations' data, local work
//! for `Output::Train`, the Byzantine participants, and the campaign checks.
//!
//! The engine reads what the cores decide from their outputs:
//! `RoundClosed` (the accepted count, the accepted-set digest and the model
//! hash) is checked at once; `ModelReady` shows a node finished. Only at the end does it ask each core for its campaign view
//! (rejection counters, round durations), through the API a client would use.

use std::collections::{BTreeMap, BTreeSet};

use mc_core::{
    ApiError, ApiRequest, ApiResponse, CampaignId, CampaignRequest, CampaignView, FinishedModel,
    Input, Output, Participant, RequestId, RoundRecord, TrainJob, TrainKind, TrainResult,
};
use mc_learn_core::ed25519_dalek::SigningKey;
use mc_learn_core::{ModelSchema, Task};
use rand::Rng;
use rand::rngs::ChaCha8Rng;

use super::{Event, Simulation};
use crate::Error;
use crate::checker::Invariant;
use crate::learning::train::{Org, score, single_threaded};
use crate::learning::{Behaviour, Config, assign, attack};
use crate::metrics::Via;
use crate::network::Kind;
use crate::queue::Micros;
use crate::report::{LearningReport, RoundReport, ScoreReport, Spread};
use crate::rng::{Streams, unit};
use crate::trace::What;

/// The API request id of the campaign's creation (client writes use small ids).
pub(super) const CAMPAIGN_REQUEST: RequestId = u64::MAX;
/// The API request id of the end-of-run campaign views.
const VIEW_REQUEST: RequestId = u64::MAX - 1;

/// A node's record of one closed round.
#[derive(Debug, Clone)]
struct Closed {
    node: usize,
    at: Micros,
    accepted: usize,
    digest: String,
    model_hash: String,
}

/// The campaign's state in the engine.
#[derive(Debug)]
pub(super) struct Learning {
    config: Config,
    schema: ModelSchema,
    behaviours: Vec<Behaviour>,
    orgs: Vec<Org>,
    /// Per node: how much slower than the fastest its machine is.
    slowness: Vec<f64>,
    /// Per node: its ed25519 identity secret (kept across restarts).
    secrets: Vec<[u8; 32]>,
    /// A key outside the campaign, for forged and impostor updates.
    outsider: SigningKey,
    attack_rng: ChaCha8Rng,
    campaign_seed: u64,
    campaign: Option<String>,
    created_at: Micros,
    crashed: Vec<bool>,
    /// Per node: the first round it has not closed yet.
    next_round: Vec<u32>,
    /// Per round: every node's record, in the order they closed it.
    closed: Vec<Vec<Closed>>,
    /// Per node: when it finished, and its model.
    finished: Vec<Option<(Micros, FinishedModel)>>,
    /// Per node: its campaign view at the end.
    views: Vec<Option<CampaignView>>,
    /// `(node, score)` of every honest node's final model, at the end.
    scores: Vec<(usize, f64)>,
    /// The score over every honest node's held-out rows pooled.
    pooled_score: f64,
    jobs: u64,
    compute: Micros,
    sabotaged: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Learning {
    /// Data, behaviours, keys and machine speeds for `nodes` nodes, all from the seed.
    pub(super) fn new(config: &Config, nodes: usize, streams: &Streams) -> Result<Self, Error> {
        single_threaded();
        let schema = config.schema()?;
        let orgs = Org::consortium(config, &schema, nodes, streams)?;
        let mut rng = streams.stream("learning");
        let behaviours = assign(config, nodes, &mut rng);
        let campaign_seed = rng.next_u64();
        let mut speed = streams.stream("learning/compute");
        let slowness = (0..nodes)
            .map(|_| 1.0 + config.compute_spread * unit(&mut speed))
            .collect();
        let mut keys = streams.stream("learning/keys");
        let mut secret = || {
            let mut s = [0u8; 32];
            keys.fill_bytes(&mut s);
            s
        };
        let secrets: Vec<[u8; 32]> = (0..nodes).map(|_| secret()).collect();
        let outsider = SigningKey::from_bytes(&secret());
        Ok(Self {
            config: config.clone(),
            schema,
            behaviours,
            orgs,
            slowness,
            secrets,
            outsider,
            attack_rng: streams.stream("learning/attacks"),
            campaign_seed,
            campaign: None,
            created_at: 0,
            crashed: vec![false; nodes],
            next_round: vec![0; nodes],
            closed: vec![Vec::new(); config.rounds as usize + 1],
            finished: vec![None; nodes],
            views: Vec::new(),
            scores: Vec::new(),
            pooled_score: 0.0,
            jobs: 0,
            compute: 0,
            sabotaged: 0,
        })
    }

    /// Node `n`'s identity secret.
    pub(super) fn secret(&self, n: usize) -> [u8; 32] {
        self.secrets[n]
    }

    /// Node `n` crashed: while it is down it does not count as an honest
    /// participant that must finish.
    pub(super) fn crashed(&mut self, n: usize) {
        self.crashed[n] = true;
    }

    /// Node `n` restarted: it resumes from its saved progress and catches up
    /// with the others (`mc_core::learning`), so it must finish on
    /// their model again.
    pub(super) fn restarted(&mut self, n: usize) {
        self.crashed[n] = false;
    }

    fn is_honest(&self, n: usize) -> bool {
        self.behaviours[n] == Behaviour::Honest && !self.crashed[n]
    }

    /// How many participants can send a valid update.
    fn valid_senders(&self) -> usize {
        self.behaviours.iter().filter(|b| !b.never_valid()).count()
    }
}

impl Simulation {
    /// Node `n` is asked to create the campaign, every node a participant.
    pub(super) fn create_campaign(&mut self, n: usize) {
        let Some(l) = self.learning.as_ref() else {
            return;
        };
        let mut participants = Vec::with_capacity(self.hosts.len());
        for (i, host) in self.hosts.iter_mut().enumerate() {
            let key = match host.core.as_mut() {
                Some(core) => core.status().learning.public_key,
                None => hex(&SigningKey::from_bytes(&l.secrets[i])
                    .verifying_key()
                    .to_bytes()),
            };
            participants.push(Participant {
                node: host.id.to_string(),
                key,
            });
        }
        let c = &l.config;
        let request = CampaignRequest {
            model: l.schema.clone(),
            rounds: c.rounds,
            local_epochs: c.local_epochs,
            batch_size: c.batch_size,
            learning_rate: c.learning_rate,
            drift_correction: c.drift_correction,
            final_rate_fraction: c.final_rate_fraction,
            init: c.init,
            participants,
            aggregation: c.aggregation,
            round_deadline_s: c.round_deadline_s,
            seed: Some(l.campaign_seed),
            max_update_norm: c.max_update_norm,
        };
        self.input(
            n,
            Input::Api {
                id: CAMPAIGN_REQUEST,
                request: ApiRequest::CreateCampaign(Box::new(request)),
            },
            Via::Sync,
        );
    }

    /// The creator's answer to the campaign request.
    pub(super) fn campaign_created(&mut self, n: usize, response: Result<ApiResponse, ApiError>) {
        let now = self.now;
        match (response, self.learning.as_mut()) {
            (Ok(ApiResponse::Campaign(view)), Some(l)) => {
                l.campaign = Some(view.id);
                l.created_at = now;
            }
            (other, _) => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(r) => format!("unexpected answer {r:?}"),
                };
                let message = format!("n{n:04} did not create the campaign: {why}");
                self.violate(Invariant::CampaignCompletes, Some(n), message);
            }
        }
    }

    /// Serves node `n`'s `Output::Train`: computes the result now (as the
    /// node's learner would), corrupts it if `n` attacks its weights, and
    /// hands it to the core after the simulated compute time.
    pub(super) fn train(&mut self, n: usize, job: TrainJob) {
        let Some(l) = self.learning.as_deref_mut() else {
            return;
        };
        let behaviour = l.behaviours[n];
        let corrupts = behaviour.corrupts(job.round, &l.config.attack);
        let outcome = l.orgs[n].run_job(&job).map(|(mut weights, rows)| {
            let base: &[f32] = match &job.kind {
                TrainKind::Update { base, .. } => base,
                TrainKind::Moments => &[],
            };
            if corrupts {
                attack::corrupt(
                    behaviour,
                    &l.config.attack,
                    base,
                    &mut weights,
                    &mut l.attack_rng,
                );
            }
            (weights, rows)
        });
        let delay = l.orgs[n].compute_time(&job, &l.config, l.slowness[n]);
        l.jobs += 1;
        l.compute += delay;
        let incarnation = self.hosts[n].incarnation;
        self.queue.push(
            self.now + delay,
            Event::Trained {
                node: n,
                incarnation,
                result: job.result(outcome),
            },
        );
    }

    pub(super) fn trained(&mut self, n: usize, incarnation: u32, result: TrainResult) {
        if self.hosts[n].incarnation != incarnation || self.hosts[n].core.is_none() {
            return;
        }
        let round = result.round;
        self.trace.record(self.now, n, What::Trained { round });
        self.input(n, Input::Trained(result), Via::Sync);
    }

    pub(super) fn model_ready(&mut self, n: usize, model: FinishedModel) {
        let now = self.now;
        if let Some(l) = self.learning.as_mut() {
            l.finished[n].get_or_insert((now, model));
        }
    }

    /// What node `n`'s point-to-point message looks like on the wire: a
    /// wire saboteur's update chunks are rewritten after signing.
    pub(super) fn on_the_wire(&mut self, n: usize, bytes: Vec<u8>) -> Vec<u8> {
        let Some(l) = self.learning.as_mut() else {
            return bytes;
        };
        let behaviour = l.behaviours[n];
        if !behaviour.on_wire() {
            return bytes;
        }
        match attack::sabotage(behaviour, &bytes, &l.outsider) {
            Some(rewritten) => {
                l.sabotaged += 1;
                rewritten
            }
            None => bytes,
        }
    }

    /// Node `n` closed a round of campaign `campaign` (`Output::RoundClosed`):
    /// checks it, once per node and round (a node that caught up skipped
    /// the rounds in between; one restarted from an older disk may close a
    /// round again).
    pub(super) fn round_output(&mut self, n: usize, campaign: CampaignId, record: RoundRecord) {
        let Some(l) = self.learning.as_ref() else {
            return;
        };
        if l.campaign.as_deref() != Some(campaign.to_string().as_str())
            || record.round < l.next_round[n]
            || record.round > l.config.rounds
        {
            return;
        }
        let closed = Closed {
            node: n,
            at: self.now,
            accepted: record.accepted,
            digest: record.accepted_digest,
            model_hash: record.model_hash,
        };
        self.round_closed(record.round, closed);
    }

    /// The model-agreement and sabotage checks of one closed round.
    fn round_closed(&mut self, round: u32, closed: Closed) {
        let Some(l) = self.learning.as_mut() else {
            return;
        };
        let n = closed.node;
        self.trace.record(
            self.now,
            n,
            What::RoundClosed {
                round,
                accepted: closed.accepted as u32,
            },
        );
        let bound = l.valid_senders();
        let honest_core = !l.behaviours[n].on_wire();
        let records = &mut l.closed[round as usize];
        let clash = records
            .iter()
            .find(|c| c.digest == closed.digest && c.model_hash != closed.model_hash)
            .map(|c| format!("n{:04} holds {}", c.node, c.model_hash));
        let accepted = closed.accepted;
        let (digest, hash) = (closed.digest.clone(), closed.model_hash.clone());
        records.push(closed);
        l.next_round[n] = round + 1;
        if let Some(other) = clash {
            let message = format!(
                "round {round}: n{n:04} accepted the set {digest} and holds model {hash}, but {other} from the same set"
            );
            self.violate(Invariant::ModelAgreement, Some(n), message);
        } else if honest_core && accepted > bound {
            let message = format!(
                "round {round}: n{n:04} accepted {accepted} updates, but only {bound} participants send valid ones: \
                 a NaN, forged, tampered or impostor update got through"
            );
            self.violate(Invariant::SabotageRefused, Some(n), message);
        }
    }

    /// Node `n`'s view of campaign `id`, asked through the API. Only at the
    /// end of the run: whatever else the core queues is not applied.
    fn campaign_view(&mut self, n: usize, id: &str) -> Option<CampaignView> {
        let now = self.node_now(n);
        let core = self.hosts[n].core.as_mut()?;
        core.handle(
            now,
            Input::Api {
                id: VIEW_REQUEST,
                request: ApiRequest::GetCampaign { id: id.to_string() },
            },
        );
        let mut view = None;
        while let Some(output) = core.poll_output() {
            if let Output::Reply {
                id: VIEW_REQUEST,
                response: Ok(ApiResponse::Campaign(v)),
            } = output
            {
                view = Some(*v);
            }
        }
        view
    }

    /// The end of the run: every honest participant finished, counted every
    /// kind of sabotage, and holds a model that scores above the floor.
    pub(super) fn learning_end_checks(&mut self) {
        let Some(l) = self.learning.as_ref() else {
            return;
        };
        self.trace
            .record(self.now, usize::MAX, What::Check { name: "learning" });
        let Some(id) = l.campaign.clone() else {
            let message = "the campaign was never created".to_string();
            self.violate(Invariant::CampaignCompletes, None, message);
            return;
        };
        let views: Vec<Option<CampaignView>> = (0..self.hosts.len())
            .map(|n| self.campaign_view(n, &id))
            .collect();
        let Some(l) = self.learning.as_deref_mut() else {
            return;
        };
        l.views = views;
        let nodes = l.behaviours.len();
        let unfinished: Vec<usize> = (0..nodes)
            .filter(|n| l.is_honest(*n) && l.finished[*n].is_none())
            .collect();
        if let Some(&first) = unfinished.first() {
            let at = l.views[first].as_ref().map_or("no campaign".into(), |v| {
                format!(
                    "at round {} of {}, {:?}",
                    v.current_round, v.total_rounds, v.state
                )
            });
            let message = format!(
                "{} honest participants did not finish the campaign, e.g. n{first:04} ({at})",
                unfinished.len()
            );
            self.violate(Invariant::CampaignCompletes, Some(first), message);
            return;
        }
        let kinds: BTreeSet<&'static str> =
            l.behaviours.iter().filter_map(|b| b.rejection()).collect();
        for n in (0..nodes).filter(|n| l.is_honest(*n)) {
            let counted = |kind: &str| {
                l.views[n]
                    .as_ref()
                    .and_then(|v| v.rejections.get(kind).copied())
                    .unwrap_or(0)
            };
            if let Some(kind) = kinds.iter().find(|k| counted(k) == 0) {
                let message = format!(
                    "n{n:04} never refused an update as {kind}, yet a participant sends only such updates"
                );
                self.violate(Invariant::SabotageRefused, Some(n), message);
                return;
            }
        }
        let mut scores = Vec::new();
        let (mut pooled_predictions, mut pooled_targets) = (Vec::new(), Vec::new());
        for n in (0..nodes).filter(|n| l.is_honest(*n)) {
            let Some((_, model)) = &l.finished[n] else {
                continue;
            };
            let org = &l.orgs[n];
            match org.predict(&l.schema, &model.moments, &model.weights) {
                Ok(predictions) => {
                    scores.push((n, score(&l.schema, &predictions, &org.test.y)));
                    pooled_predictions.extend(predictions);
                    pooled_targets.extend_from_slice(&org.test.y);
                }
                Err(e) => {
                    let message = format!("n{n:04}'s final model cannot be scored: {e}");
                    self.violate(Invariant::ModelQuality, Some(n), message);
                    return;
                }
            }
        }
        l.scores = scores;
        l.pooled_score = score(&l.schema, &pooled_predictions, &pooled_targets);
        let worst = l.scores.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(floor), Some((n, score))) = (l.config.score_floor, worst)
            && (score.is_nan() || score < floor)
        {
            let message = format!(
                "the final model scores {score:.4} on {}'s held-out rows (n{n:04}), below the floor of {floor}",
                l.orgs[n].name
            );
            self.violate(Invariant::ModelQuality, Some(n), message);
        } else if let Some(floor) = l.config.pooled_score_floor
            && (l.pooled_score.is_nan() || l.pooled_score < floor)
        {
            let message = format!(
                "the final model scores {:.4} on every honest organisation's held-out rows pooled, below the floor of {floor}",
                l.pooled_score
            );
            self.violate(Invariant::ModelQuality, None, message);
        }
    }

    /// The learning part of the report.
    pub(super) fn learning_report(&self) -> Option<LearningReport> {
        let l = self.learning.as_deref()?;
        let nodes = l.behaviours.len();
        let honest: Vec<usize> = (0..nodes).filter(|n| l.is_honest(*n)).collect();
        let secs = |us: Micros| us as f64 / 1e6;
        let rounds = l
            .closed
            .iter()
            .enumerate()
            .map(|(round, records)| {
                let records: Vec<&Closed> =
                    records.iter().filter(|c| l.is_honest(c.node)).collect();
                let distinct = |f: fn(&Closed) -> &str| {
                    records.iter().map(|c| f(c)).collect::<BTreeSet<_>>().len()
                };
                let recorded: Vec<_> = honest
                    .iter()
                    .filter_map(|n| l.views.get(*n).and_then(Option::as_ref))
                    .filter_map(|v| v.rounds.iter().find(|r| r.round as usize == round))
                    .collect();
                let durations: Vec<f64> = recorded.iter().map(|r| r.duration_ms as f64).collect();
                let durations = Spread::of(&durations);
                let times: Vec<f64> = records.iter().map(|c| secs(c.at)).collect();
                let times = Spread::of(&times);
                RoundReport {
                    round: round as u32,
                    accepted_min: records.iter().map(|c| c.accepted).min().unwrap_or(0),
                    accepted_max: records.iter().map(|c| c.accepted).max().unwrap_or(0),
                    digests: distinct(|c| &c.digest),
                    models: distinct(|c| &c.model_hash),
                    closed_by_deadline: recorded
                        .iter()
                        .filter(|r| r.closed_by == mc_core::learning::ClosedBy::Deadline)
                        .count(),
                    duration_ms_mean: durations.mean,
                    duration_ms_max: durations.max,
                    closed_s: (times.min, times.max),
                }
            })
            .collect();
        let mut rejections = BTreeMap::new();
        for v in honest
            .iter()
            .filter_map(|n| l.views.get(*n).and_then(Option::as_ref))
        {
            for (kind, count) in &v.rejections {
                *rejections.entry(kind.clone()).or_insert(0) += count;
            }
        }
        let catch_ups = honest
            .iter()
            .filter_map(|n| l.views.get(*n).and_then(Option::as_ref))
            .map(|v| v.caught_up.len())
            .sum();
        let mut models: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &honest {
            if let Some((_, m)) = &l.finished[*n] {
                *models.entry(m.model_hash.as_str()).or_insert(0) += 1;
            }
        }
        let (common, on_common) = models
            .iter()
            .max_by_key(|(_, count)| **count)
            .map_or(("", 0), |(hash, count)| (*hash, *count));
        let byzantine_on_common = (0..nodes)
            .filter(|n| l.behaviours[*n] != Behaviour::Honest)
            .filter(|n| matches!(&l.finished[*n], Some((_, m)) if m.model_hash == common))
            .count();
        let mut byzantine: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (n, b) in l.behaviours.iter().enumerate() {
            if *b != Behaviour::Honest {
                byzantine.entry(b.name().to_string()).or_default().push(n);
            }
        }
        let rows: Vec<f64> = l
            .orgs
            .iter()
            .map(|o| (o.train.len() + o.test.len()) as f64)
            .collect();
        let scores: Vec<f64> = l.scores.iter().map(|(_, s)| *s).collect();
        let worst_org = l
            .scores
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(String::new(), |(n, _)| l.orgs[*n].name.clone());
        let learn = self.net.traffic.by_kind[Kind::ALL
            .iter()
            .position(|k| *k == Kind::Learn)
            .unwrap_or(0)];
        Some(LearningReport {
            model: l.config.model.clone(),
            aggregation: l.config.aggregation.to_string(),
            campaign: l.campaign.clone().unwrap_or_default(),
            participants: nodes,
            honest: honest.len(),
            byzantine,
            rows: Spread::of(&rows),
            created_at_s: secs(l.created_at),
            honest_completed: honest.iter().filter(|n| l.finished[**n].is_some()).count(),
            completed_at_s: honest
                .iter()
                .filter_map(|n| l.finished[*n].as_ref().map(|(at, _)| secs(*at)))
                .fold(0.0, f64::max),
            rounds,
            rejections,
            catch_ups,
            honest_final_models: models.len(),
            honest_on_common_model: on_common,
            byzantine_on_common_model: byzantine_on_common,
            common_model_hash: common.to_string(),
            score: ScoreReport {
                metric: match l.schema.task {
                    Task::Regression => "r2",
                    Task::BinaryClassification => "f1",
                }
                .to_string(),
                orgs: scores.len(),
                spread: Spread::of(&scores),
                worst_org,
                floor: l.config.score_floor,
                pooled: l.pooled_score,
                pooled_floor: l.config.pooled_score_floor,
            },
            jobs: l.jobs,
            compute_s: secs(l.compute),
            sabotaged_messages: l.sabotaged,
            messages: learn.messages,
            bytes: learn.bytes,
        })
    }
}
