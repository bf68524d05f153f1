//! Tracking every client write from request to "visible on every live node".
//!
//! Each node keeps the set of writes it does not hold yet. The engine checks
//! only those keys, and only after an input changed the node's document
//! (the core emitted a `Persist`), so the cost is proportional to the writes
//! in flight, not to the history. A write is *disseminated* the first time no
//! live node misses it; its dissemination latency runs from the client's
//! request to that moment.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::queue::{Micros, as_ms};

/// How a write first became visible on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A gossip message.
    Gossip,
    /// Anything else: a sync exchange (or, after a restart, the disk).
    Sync,
}

/// One client write.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its key.
    pub key: String,
    /// The node the client sent it to.
    pub origin: usize,
    /// When the client sent it.
    pub issued: Micros,
    /// When the client got its acknowledgement.
    pub acked: Option<Micros>,
    /// When the last live node that missed it got it.
    pub everywhere: Option<Micros>,
    /// Whether the node refused it.
    pub failed: bool,
    /// Live nodes that still miss it.
    missing: u32,
}

/// Every write of a run.
#[derive(Debug, Default)]
pub struct Writes {
    records: Vec<Record>,
    missing: Vec<BTreeSet<u32>>,
    /// First arrivals carried by gossip.
    pub via_gossip: u64,
    /// First arrivals carried by sync (or restored from disk).
    pub via_sync: u64,
}

impl Writes {
    /// Tracking for `nodes` nodes.
    pub fn new(nodes: usize) -> Self {
        Self {
            missing: vec![BTreeSet::new(); nodes],
            ..Self::default()
        }
    }

    /// Every write so far, by number.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Records a write sent to `origin`; every other node in `live` misses it.
    pub fn issue(
        &mut self,
        key: String,
        origin: usize,
        now: Micros,
        live: impl IntoIterator<Item = usize>,
    ) -> u32 {
        let id = self.records.len() as u32;
        let mut missing = 0;
        for node in live {
            if node != origin {
                self.missing[node].insert(id);
                missing += 1;
            }
        }
        self.records.push(Record {
            key,
            origin,
            issued: now,
            acked: None,
            everywhere: (missing == 0).then_some(now),
            failed: false,
            missing,
        });
        id
    }

    /// The client got an acknowledgement (or, `ok == false`, an error).
    pub fn acknowledged(&mut self, id: u32, now: Micros, ok: bool) {
        if let Some(r) = self.records.get_mut(id as usize) {
            r.acked = ok.then_some(now);
            r.failed = !ok;
        }
    }

    /// The writes `node` does not hold yet.
    pub fn missing_on(&self, node: usize) -> &BTreeSet<u32> {
        &self.missing[node]
    }

    /// `node` now holds `ids`.
    pub fn arrived(&mut self, node: usize, ids: &[u32], now: Micros, via: Via) {
        for id in ids {
            if !self.missing[node].remove(id) {
                continue;
            }
            match via {
                Via::Gossip => self.via_gossip += 1,
                Via::Sync => self.via_sync += 1,
            }
            self.one_less(*id, now);
        }
    }

    fn one_less(&mut self, id: u32, now: Micros) {
        let r = &mut self.records[id as usize];
        r.missing = r.missing.saturating_sub(1);
        if r.missing == 0 && r.everywhere.is_none() {
            r.everywhere = Some(now);
        }
    }

    /// `node` crashed: what it misses no longer keeps a write from being everywhere.
    pub fn node_down(&mut self, node: usize, now: Micros) {
        let ids: Vec<u32> = self.missing[node].iter().copied().collect();
        for id in ids {
            self.one_less(id, now);
        }
    }

    /// `node` restarted missing exactly `missing`.
    pub fn node_up(&mut self, node: usize, missing: BTreeSet<u32>) {
        for id in &missing {
            let r = &mut self.records[*id as usize];
            if r.everywhere.is_none() {
                r.missing += 1;
            }
        }
        self.missing[node] = missing;
    }

    /// Writes acknowledged by `node`.
    pub fn acked_by(&self, node: usize) -> impl Iterator<Item = (u32, &Record)> {
        self.records
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.origin == node && r.acked.is_some())
            .map(|(i, r)| (i as u32, r))
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(mut samples: Vec<Micros>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            let i = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            as_ms(samples[i.clamp(1, samples.len()) - 1])
        };
        let sum: u128 = samples.iter().map(|s| u128::from(*s)).sum();
        Self {
            count: samples.len(),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: as_ms(samples[samples.len() - 1]),
            mean: (sum as f64 / samples.len() as f64).round() / 1e3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_everywhere_when_the_last_live_node_has_it() {
        let mut w = Writes::new(3);
        let id = w.issue("w/1".into(), 0, 100, [0, 1, 2]);
        w.acknowledged(id, 105, true);
        w.arrived(1, &[id], 150, Via::Gossip);
        assert_eq!(w.records()[0].everywhere, None);
        w.arrived(1, &[id], 160, Via::Gossip);
        w.arrived(2, &[id], 400, Via::Sync);
        assert_eq!(w.records()[0].everywhere, Some(400));
        assert_eq!((w.via_gossip, w.via_sync), (1, 1));
        assert_eq!(w.acked_by(0).count(), 1);
    }

    #[test]
    fn a_crash_of_the_last_missing_node_completes_a_write_and_a_restart_reopens_none() {
        let mut w = Writes::new(3);
        let id = w.issue("w/1".into(), 0, 0, [0, 1, 2]);
        w.arrived(1, &[id], 10, Via::Gossip);
        w.node_down(2, 20);
        assert_eq!(w.records()[0].everywhere, Some(20));
        w.node_up(2, BTreeSet::from([id]));
        assert_eq!(w.missing_on(2).len(), 1);
        w.arrived(2, &[id], 30, Via::Sync);
        assert_eq!(w.records()[0].everywhere, Some(20), "the first time counts");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = Percentiles::of((1..=100).map(|i| i * 1000).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(p.mean, 50.5);
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }
}
