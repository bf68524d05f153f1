//! The outcome of a run: a JSON-serialisable [`Report`] and a printed summary.
//!
//! The figures are the ones gossip evaluations report: dissemination latency
//! (client request → visible on every live node), delivery ratio, convergence
//! time after each heal, messages and bytes per node per second, duplicate
//! ratio. The report holds nothing that depends on the machine (no wall
//! time), so the same scenario and seed give byte-identical JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mc_node::core::Counters;
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
        let _ = writeln!(s, "checks held: {}", self.checks.join(", "));
        s
    }
}
