//! Turning a finished run into its [`Report`].

use std::collections::BTreeMap;

use mc_core::Counters;

use super::Simulation;
use crate::metrics::Percentiles;
use crate::network::Kind;
use crate::report::{FaultReport, GossipReport, Report, TrafficReport, WriteReport};

/// Adds `b` to `a`, field by field.
pub(super) fn add_counters(a: &mut Counters, b: &Counters) {
    a.gossip_published += b.gossip_published;
    a.gossip_received += b.gossip_received;
    a.gossip_oversize_fallbacks += b.gossip_oversize_fallbacks;
    a.broadcast_failures += b.broadcast_failures;
    a.sync_sent += b.sync_sent;
    a.sync_received += b.sync_received;
    a.rejected_messages += b.rejected_messages;
    a.compactions += b.compactions;
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { part / whole } else { 0.0 }
}

impl Simulation {
    /// A digest of every live node's heads, in node order.
    fn state_digest(&mut self) -> String {
        let mut text = String::new();
        for (n, host) in self.hosts.iter_mut().enumerate() {
            if let Some(core) = host.core.as_mut() {
                text.push_str(&format!("n{n}:{};", core.knowledge_heads().join(",")));
            }
        }
        format!("{:016x}", crate::rng::fnv1a(text.as_bytes()))
    }

    pub(super) fn report(&mut self) -> Report {
        let final_state_digest = self.state_digest();
        let n = self.hosts.len();
        let seconds = self.now as f64 / 1e6;
        let records = self.writes.records();
        let acked: Vec<&crate::metrics::Record> =
            records.iter().filter(|r| r.acked.is_some()).collect();
        let latencies = acked
            .iter()
            .filter_map(|r| r.everywhere.map(|e| e - r.issued))
            .collect::<Vec<_>>();
        let mut degraded = self.degraded.clone();
        degraded.extend(self.partitioned_since.map(|since| (since, self.now)));
        let clean = acked
            .iter()
            .filter_map(|r| r.everywhere.map(|e| (r.issued, e)))
            .filter(|(from, to)| degraded.iter().all(|(a, b)| to < a || from > b))
            .map(|(from, to)| to - from)
            .collect::<Vec<_>>();
        let live: Vec<usize> = (0..n).filter(|i| self.hosts[*i].core.is_some()).collect();
        let missing_pairs: usize = live
            .iter()
            .map(|i| {
                self.writes
                    .missing_on(*i)
                    .iter()
                    .filter(|id| records[**id as usize].acked.is_some())
                    .count()
            })
            .sum();
        let pairs = (acked.len() * live.len()) as f64;
        let total = self.net.traffic.total();
        let t = &self.net.traffic;
        let by_kind: BTreeMap<String, _> = Kind::ALL
            .iter()
            .zip(t.by_kind.iter())
            .filter(|(_, c)| c.messages > 0)
            .map(|(k, c)| (k.name().to_string(), *c))
            .collect();
        let mut core = Counters::default();
        for host in &self.hosts {
            add_counters(&mut core, &host.past_counters);
            if let Some(node) = &host.core {
                add_counters(&mut core, node.counters());
            }
        }
        let s = &self.stats;
        let checks = &self.scenario.checks;
        let learning = self.scenario.learning.as_ref();
        let held = [
            (checks.message_size, "message-size"),
            (checks.no_lost_writes, "no-lost-write"),
            (checks.convergence, "convergence"),
            (learning.is_some(), "model-agreement"),
            (learning.is_some(), "sabotage-refused"),
            (learning.is_some(), "campaign-completes"),
            (
                learning.is_some_and(|l| l.score_floor.is_some() || l.pooled_score_floor.is_some()),
                "model-quality",
            ),
        ];
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            nodes: n,
            sites: self.scenario.sites.clone(),
            links: self.links.len(),
            mean_degree: ratio(2.0 * self.links.len() as f64, n as f64),
            virtual_s: seconds,
            events: s.events,
            sync_interval_ms: self.scenario.node.sync_interval_ms,
            writes: WriteReport {
                issued: records.len() as u64,
                acknowledged: acked.len() as u64,
                failed: records.iter().filter(|r| r.failed).count() as u64,
                refused: s.writes_refused,
                skipped_for_checks: s.writes_skipped,
                disseminated: latencies.len() as u64,
            },
            dissemination_ms: Percentiles::of(latencies),
            dissemination_outside_faults_ms: Percentiles::of(clean),
            delivery_ratio: if pairs > 0.0 {
                1.0 - missing_pairs as f64 / pairs
            } else {
                1.0
            },
            first_arrival_by_gossip: ratio(
                self.writes.via_gossip as f64,
                (self.writes.via_gossip + self.writes.via_sync) as f64,
            ),
            convergence_bound_ms: self.bound as f64 / 1e3,
            convergence: self.convergence.clone(),
            traffic: TrafficReport {
                messages_per_node_per_s: ratio(total.messages as f64, n as f64 * seconds),
                bytes_per_node_per_s: ratio(total.bytes as f64, n as f64 * seconds),
                by_kind,
                gossip_frames_lost: t.lost,
                duplicated_by_faults: t.duplicated,
                dropped_connection_closed: t.dropped_link_down,
                dropped_by_hook: t.dropped_by_hook,
                max_direct_bytes: t.max_direct_bytes,
                max_gossip_bytes: t.max_gossip_bytes,
            },
            gossip: GossipReport {
                published: self.messages.len() as u64,
                delivered: s.gossip_delivered,
                duplicates: s.gossip_duplicates,
                duplicate_ratio: ratio(
                    s.gossip_duplicates as f64,
                    (s.gossip_delivered + s.gossip_duplicates) as f64,
                ),
            },
            faults: FaultReport {
                crashes: s.crashes,
                restarts: s.restarts,
                unflushed_batches_lost: s.lost_batches,
                replies_lost: s.lost_replies,
                deferred_while_paused: s.deferred,
            },
            core,
            checks: held
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| name.to_string())
                .collect(),
            final_state_digest,
            learning: self.learning_report(),
        }
    }
}
