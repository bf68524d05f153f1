//! The invariants, run against the live cores as the simulation goes.

use std::collections::BTreeSet;

use mc_core::Node;

use super::Simulation;
use crate::checker::{Convergence, Invariant, first_disagreement};
use crate::metrics::Via;
use crate::queue::as_ms;
use crate::trace::What;

fn holds(core: &Node, key: &str) -> bool {
    core.knowledge().contains_key(key).unwrap_or(false)
}

impl Simulation {
    /// Node `n`'s document changed: which of the writes it missed does it hold now?
    pub(super) fn check_arrivals(&mut self, n: usize, via: Via) {
        let Some(core) = self.hosts[n].core.as_ref() else {
            return;
        };
        let records = self.writes.records();
        let arrived: Vec<u32> = self
            .writes
            .missing_on(n)
            .iter()
            .copied()
            .filter(|id| holds(core, &records[*id as usize].key))
            .collect();
        if !arrived.is_empty() {
            self.writes.arrived(n, &arrived, self.now, via);
        }
    }

    /// Right after a restart: every write the node acknowledged must have
    /// survived in its store; then find what it misses.
    pub(super) fn check_restored_writes(&mut self, n: usize) {
        let Some(core) = self.hosts[n].core.as_ref() else {
            return;
        };
        if self.scenario.checks.no_lost_writes {
            let lost = self.writes.acked_by(n).find(|(_, r)| !holds(core, &r.key));
            if let Some((_, r)) = lost {
                let message = format!(
                    "n{n:04} acknowledged {} at t = {:.3} s but does not hold it after restarting from its store",
                    r.key,
                    r.acked.unwrap_or(0) as f64 / 1e6
                );
                self.violate(Invariant::NoLostWrite, Some(n), message);
                return;
            }
        }
        let missing: BTreeSet<u32> = self
            .writes
            .records()
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.failed && !holds(core, &r.key))
            .map(|(i, _)| i as u32)
            .collect();
        self.writes.node_up(n, missing);
    }

    pub(super) fn deadline(&mut self, index: usize) {
        let window = self.windows[index].clone();
        self.trace.record(
            self.now,
            usize::MAX,
            What::Check {
                name: "convergence",
            },
        );
        self.compare_heads(&window.label, window.start);
    }

    /// Every group of live, unpaused, mutually connected nodes must have
    /// identical heads. Records how long after `since` the last change was.
    fn compare_heads(&mut self, label: &str, since: crate::queue::Micros) {
        let members: Vec<bool> = (0..self.hosts.len()).map(|n| self.is_serving(n)).collect();
        let groups = self.links.components(|n| members[n], true);
        let mut last_change = since;
        let mut nodes = 0;
        for group in &groups {
            let mut heads = Vec::with_capacity(group.len());
            for n in group {
                let host = &mut self.hosts[*n];
                last_change = last_change.max(host.last_change);
                if let Some(core) = host.core.as_mut() {
                    heads.push((*n, core.knowledge_heads()));
                }
            }
            nodes += heads.len();
            if let Some((a, b)) = first_disagreement(&heads) {
                let entries = |n: usize| {
                    self.hosts[n]
                        .core
                        .as_ref()
                        .map_or(0, |c| c.knowledge().len())
                };
                let message = format!(
                    "after {label} at t = {:.3} s, connected live nodes still disagree at the {:.0} ms bound: \
                     n{:04} has {} entries and heads {:?}, n{:04} has {} entries and heads {:?} \
                     ({} groups of connected nodes, {} nodes in this one)",
                    since as f64 / 1e6,
                    as_ms(self.bound),
                    a.0,
                    entries(a.0),
                    short(&a.1),
                    b.0,
                    entries(b.0),
                    short(&b.1),
                    groups.len(),
                    group.len(),
                );
                self.violate(Invariant::Convergence, Some(b.0), message);
                return;
            }
        }
        self.convergence.push(Convergence {
            after: label.to_string(),
            at_s: since as f64 / 1e6,
            converged_ms: as_ms(last_change.saturating_sub(since)),
            bound_ms: as_ms(self.bound),
            nodes,
            groups: groups.len(),
        });
    }

    /// The end of the run: nothing acknowledged is missing anywhere, and
    /// connected nodes agree.
    pub(super) fn end_checks(&mut self) {
        self.trace
            .record(self.now, usize::MAX, What::Check { name: "end" });
        self.learning_end_checks();
        if self.violation.is_some() {
            return;
        }
        let healed = self.groups.iter().all(|g| *g == self.groups[0]);
        if self.scenario.checks.no_lost_writes && healed {
            for n in 0..self.hosts.len() {
                if !self.is_serving(n) {
                    continue;
                }
                let records = self.writes.records();
                let lost = self
                    .writes
                    .missing_on(n)
                    .iter()
                    .map(|id| &records[*id as usize])
                    .find(|r| r.acked.is_some() && self.hosts[r.origin].core.is_some());
                if let Some(r) = lost {
                    let message = format!(
                        "{} was acknowledged by n{:04} at t = {:.3} s but n{n:04} never received it",
                        r.key,
                        r.origin,
                        r.acked.unwrap_or(0) as f64 / 1e6
                    );
                    self.violate(Invariant::NoLostWrite, Some(n), message);
                    return;
                }
            }
        }
        if self.scenario.checks.convergence {
            let quiet_since = self
                .end
                .saturating_sub(crate::queue::secs(self.scenario.settle_s()));
            self.compare_heads("the settle time", quiet_since);
        }
    }
}

/// The first eight hex digits of each head, to keep messages readable.
fn short(heads: &[String]) -> Vec<String> {
    heads.iter().map(|h| h.chars().take(8).collect()).collect()
}
