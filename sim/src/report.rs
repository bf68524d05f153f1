//! The outcome of a run: a JSON-serialisable [`Report`] and a printed summary.
//!
//! The figures are the ones gossip evaluations report: dissemination latency
//! (client request → visible on every live node), delivery ratio, convergence
//! time after each heal, messages and bytes per node per second, duplicate
//! ratio. The report holds nothing that depends on the machine (no wall
//! time), so the same scenario and seed give byte-identical JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mc_core::Counters;
use serde::Serialize;

use crate::checker::Convergence;
use crate::metrics::Percentiles;
use crate::network::Count;

/// Everything measured in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// Nodes simulated.
    pub nodes: usize,
    /// Sites they were placed at.
    pub sites: Vec<String>,
    /// Connections in the topology.
    pub links: usize,
    /// Mean connections per node.
    pub mean_degree: f64,
    /// Virtual time simulated (s).
    pub virtual_s: f64,
    /// Events processed.
    pub events: u64,
    /// The cores' anti-entropy interval.
    pub sync_interval_ms: u64,
    /// Client writes.
    pub writes: WriteReport,
    /// Request → visible on every live node, over acknowledged writes.
    pub dissemination_ms: Percentiles,
    /// The same, over writes whose dissemination overlapped no partition,
    /// crash-to-restart interval or pause: what gossip achieves on its own.
    pub dissemination_outside_faults_ms: Percentiles,
    /// Share of (acknowledged write, live node) pairs held at the end.
    pub delivery_ratio: f64,
    /// Share of first arrivals of a write at a node that came by gossip
    /// (the rest came by anti-entropy sync).
    pub first_arrival_by_gossip: f64,
    /// Deadline for convergence after a heal or restart.
    pub convergence_bound_ms: f64,
    /// Each convergence check.
    pub convergence: Vec<Convergence>,
    /// What the network carried.
    pub traffic: TrafficReport,
    /// The gossip layer.
    pub gossip: GossipReport,
    /// What the faults did.
    pub faults: FaultReport,
    /// The cores' counters, summed over nodes and incarnations.
    pub core: Counters,
    /// Invariants that were checked and held.
    pub checks: Vec<String>,
    /// FNV-1a of every live node's final document heads, in node order: two
    /// runs with equal digests ended in the same replicated state.
    pub final_state_digest: String,
    /// The learning campaign, when the scenario has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning: Option<LearningReport>,
}

/// A federated-learning campaign: what the participants did and agreed on.
///
/// "Honest" nodes are those whose behaviour is honest and that never
/// crashed; per-round figures are over them unless a name says otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearningReport {
    /// The model trained.
    pub model: String,
    /// The aggregation rule of the model rounds.
    pub aggregation: String,
    /// The campaign's id (hex).
    pub campaign: String,
    /// Participants (every node).
    pub participants: usize,
    /// Honest participants.
    pub honest: usize,
    /// The Byzantine participants by behaviour: node numbers.
    pub byzantine: BTreeMap<String, Vec<usize>>,
    /// Rows each organisation had (train + held out): min, mean, max.
    pub rows: Spread,
    /// When the campaign was created (s).
    pub created_at_s: f64,
    /// Honest participants that finished the campaign.
    pub honest_completed: usize,
    /// When the last honest participant finished (s).
    pub completed_at_s: f64,
    /// Each round, the moments round (0) first.
    pub rounds: Vec<RoundReport>,
    /// Updates refused, by reason, summed over honest nodes.
    pub rejections: BTreeMap<String, u64>,
    /// Times an honest node caught up with the campaign's majority (after
    /// a crash, or a round closed with another accepted set), summed.
    pub catch_ups: usize,
    /// Distinct final model hashes among honest nodes (1: they agree).
    pub honest_final_models: usize,
    /// Honest nodes holding the most common final model.
    pub honest_on_common_model: usize,
    /// Byzantine nodes (running the real core) that ended on that model too.
    pub byzantine_on_common_model: usize,
    /// The most common honest final model's hash.
    pub common_model_hash: String,
    /// The final model's score on every honest organisation's held-out
    /// last 20 % of rows (R² for regression, F1 for classification).
    pub score: ScoreReport,
    /// Local jobs run.
    pub jobs: u64,
    /// Simulated compute time of those jobs, summed (s).
    pub compute_s: f64,
    /// Update chunks the wire saboteurs' messages were rewritten in.
    pub sabotaged_messages: u64,
    /// Learning messages sent (update chunks, evidence).
    pub messages: u64,
    /// Their bytes, framing included.
    pub bytes: u64,
}

/// One round of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundReport {
    /// The round (0: moments).
    pub round: u32,
    /// Updates accepted per honest node: min and max.
    pub accepted_min: usize,
    /// See `accepted_min`.
    pub accepted_max: usize,
    /// Distinct accepted-set digests among honest nodes.
    pub digests: usize,
    /// Distinct resulting model hashes among honest nodes.
    pub models: usize,
    /// Honest nodes that closed it at the deadline (the rest: complete).
    pub closed_by_deadline: usize,
    /// Round duration on honest nodes' clocks (ms): mean and max.
    pub duration_ms_mean: f64,
    /// See `duration_ms_mean`.
    pub duration_ms_max: f64,
    /// When the first and the last honest node closed it (s, virtual).
    pub closed_s: (f64, f64),
}

/// A few numbers summarising many.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (zeros when empty).
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        Self {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// The final model's score over honest organisations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreReport {
    /// `r2` or `f1`.
    pub metric: String,
    /// Organisations scored.
    pub orgs: usize,
    /// Smallest, mean and largest score.
    pub spread: Spread,
    /// The organisation with the smallest score.
    pub worst_org: String,
    /// The floor every organisation's score was checked against, if any.
    pub floor: Option<f64>,
    /// The score over every honest organisation's held-out rows pooled.
    pub pooled: f64,
    /// The floor the pooled score was checked against, if any.
    pub pooled_floor: Option<f64>,
}

/// Client writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WriteReport {
    /// Requests sent to a node.
    pub issued: u64,
    /// Acknowledged (durable on the node that took them).
    pub acknowledged: u64,
    /// Refused by the node.
    pub failed: u64,
    /// Not sent: no live node could take them.
    pub refused: u64,
    /// Not sent: they fell in a convergence-check window.
    pub skipped_for_checks: u64,
    /// Acknowledged writes that reached every live node.
    pub disseminated: u64,
}

/// Network totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficReport {
    /// Messages (all kinds) sent per node per virtual second.
    pub messages_per_node_per_s: f64,
    /// Bytes sent per node per virtual second (framing included).
    pub bytes_per_node_per_s: f64,
    /// Per kind.
    pub by_kind: BTreeMap<String, Count>,
    /// Gossip frames lost to packet loss.
    pub gossip_frames_lost: u64,
    /// Frames a duplication fault delivered twice.
    pub duplicated_by_faults: u64,
    /// Messages dropped because their connection closed in flight.
    pub dropped_connection_closed: u64,
    /// Messages the `drop-sync` test hook swallowed.
    pub dropped_by_hook: u64,
    /// Largest point-to-point payload (bytes).
    pub max_direct_bytes: usize,
    /// Largest gossip payload (bytes).
    pub max_gossip_bytes: usize,
}

/// The gossip layer.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GossipReport {
    /// Messages published.
    pub published: u64,
    /// First receptions, handed to a core.
    pub delivered: u64,
    /// Later receptions of a message already seen.
    pub duplicates: u64,
    /// `duplicates / (delivered + duplicates)`.
    pub duplicate_ratio: f64,
}

/// Fault effects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultReport {
    /// Node crashes.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
    /// Store batches lost because they were not flushed.
    pub unflushed_batches_lost: u64,
    /// Replies lost with them (never-acknowledged writes).
    pub replies_lost: u64,
    /// Events a paused node handled late.
    pub deferred_while_paused: u64,
}

impl Report {
    /// The JSON form, pretty-printed, with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    }

    /// A few lines for humans.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let d = &self.dissemination_ms;
        let w = &self.writes;
        let t = &self.traffic;
        let _ = writeln!(
            s,
            "scenario {} (seed {}): {} nodes at {} sites, {} links (mean degree {:.1}), {:.0} s virtual, {} events",
            self.scenario,
            self.seed,
            self.nodes,
            self.sites.len(),
            self.links,
            self.mean_degree,
            self.virtual_s,
            self.events
        );
        if w.issued == 0 {
            // A learning scenario without client writes.
            let _ = writeln!(s, "writes: none");
        } else {
            let _ = writeln!(
                s,
                "writes: {} issued, {} acknowledged, {} on every live node ({} skipped in check windows); \
                 delivery ratio {:.4}, {:.1} % of first arrivals by gossip",
                w.issued,
                w.acknowledged,
                w.disseminated,
                w.skipped_for_checks,
                self.delivery_ratio,
                100.0 * self.first_arrival_by_gossip
            );
            let _ = writeln!(
                s,
                "dissemination (request -> visible on all live nodes, {} writes): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                d.count, d.p50, d.p90, d.p99, d.max
            );
            let c = &self.dissemination_outside_faults_ms;
            if c.count != d.count {
                let _ = writeln!(
                    s,
                    "  outside partitions, crashes and pauses ({} writes): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    c.count, c.p50, c.p90, c.p99, c.max
                );
            }
        }
        let checks: Vec<String> = self
            .convergence
            .iter()
            .map(|c| format!("{} at {:.1} s -> {:.0} ms", c.after, c.at_s, c.converged_ms))
            .collect();
        let _ = writeln!(
            s,
            "convergence (bound {:.0} ms = 2 x {} ms + max one-way latency): {}",
            self.convergence_bound_ms,
            self.sync_interval_ms,
            if checks.is_empty() {
                "no checks".to_string()
            } else {
                checks.join("; ")
            }
        );
        let _ = writeln!(
            s,
            "traffic per node: {:.1} msg/s, {:.0} B/s; gossip duplicates {:.1} % of receptions; {} gossip frames lost",
            t.messages_per_node_per_s,
            t.bytes_per_node_per_s,
            100.0 * self.gossip.duplicate_ratio,
            t.gossip_frames_lost
        );
        if self.faults.crashes > 0 || self.faults.deferred_while_paused > 0 {
            let f = &self.faults;
            let _ = writeln!(
                s,
                "faults: {} crashes, {} restarts, {} unflushed batches and {} unsent replies lost, {} events deferred by pauses",
                f.crashes,
                f.restarts,
                f.unflushed_batches_lost,
                f.replies_lost,
                f.deferred_while_paused
            );
        }
        if let Some(l) = &self.learning {
            l.summary(&mut s);
        }
        let _ = writeln!(s, "checks held: {}", self.checks.join(", "));
        s
    }
}

/// ` (floor x)` when there is one.
fn floor(floor: Option<f64>) -> String {
    floor.map_or(String::new(), |f| format!(" (floor {f})"))
}

impl LearningReport {
    fn summary(&self, s: &mut String) {
        let byzantine: Vec<String> = self
            .byzantine
            .iter()
            .map(|(k, v)| format!("{} {k}", v.len()))
            .collect();
        let _ = writeln!(
            s,
            "learning: model {} ({}), campaign {} created at {:.1} s, {} participants ({} honest; Byzantine: {}), rows per org {:.0}-{:.0}",
            self.model,
            self.aggregation,
            &self.campaign[..self.campaign.len().min(8)],
            self.created_at_s,
            self.participants,
            self.honest,
            if byzantine.is_empty() {
                "none".to_string()
            } else {
                byzantine.join(", ")
            },
            self.rows.min,
            self.rows.max
        );
        let _ = writeln!(
            s,
            "  {}/{} honest participants completed {} rounds by {:.1} s; {} distinct final model(s) among them ({} on {}), {} Byzantine on it too",
            self.honest_completed,
            self.honest,
            self.rounds.len(),
            self.completed_at_s,
            self.honest_final_models,
            self.honest_on_common_model,
            &self.common_model_hash[..self.common_model_hash.len().min(8)],
            self.byzantine_on_common_model
        );
        if self.catch_ups > 0 {
            let _ = writeln!(
                s,
                "  {} catch-up(s): honest nodes that fell behind or diverged took the state a majority signed",
                self.catch_ups
            );
        }
        for r in &self.rounds {
            let accepted = if r.accepted_min == r.accepted_max {
                r.accepted_min.to_string()
            } else {
                format!("{}-{}", r.accepted_min, r.accepted_max)
            };
            let _ = writeln!(
                s,
                "  round {:>2}: accepted {accepted:>5}, {} digest(s), {} model(s), {} by deadline, duration mean {:.0} ms max {:.0} ms, closed {:.2}-{:.2} s",
                r.round,
                r.digests,
                r.models,
                r.closed_by_deadline,
                r.duration_ms_mean,
                r.duration_ms_max,
                r.closed_s.0,
                r.closed_s.1
            );
        }
        let rejections: Vec<String> = self
            .rejections
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(
            s,
            "  rejections at honest nodes: {}",
            if rejections.is_empty() {
                "none".to_string()
            } else {
                rejections.join(", ")
            }
        );
        let sc = &self.score;
        let _ = writeln!(
            s,
            "  final {} on {} honest orgs' held-out rows: pooled {:.4}{}; per org mean {:.4}, min {:.4} ({}){}, max {:.4}",
            sc.metric,
            sc.orgs,
            sc.pooled,
            floor(sc.pooled_floor),
            sc.spread.mean,
            sc.spread.min,
            sc.worst_org,
            floor(sc.floor),
            sc.spread.max,
        );
        let _ = writeln!(
            s,
            "  {} local jobs ({:.1} s simulated compute), {} learning messages ({:.1} MB, {:.0} kB per participant), {} rewritten by saboteurs",
            self.jobs,
            self.compute_s,
            self.messages,
            self.bytes as f64 / 1e6,
            self.bytes as f64 / 1e3 / self.participants.max(1) as f64,
            self.sabotaged_messages
        );
    }
}
