//! Faults and connections: partitions, heals, crashes, restarts, pauses,
//! clock steps, network disturbances, and the links they open and close.
//!
//! A partition closes the connections it cuts at once, on both sides, and
//! drops what was in flight on them; a heal reopens every connection that
//! should exist, each after a handshake of a few round trips. A crashed node's
//! peers notice one one-way latency (plus jitter) later — the kernel resets
//! the connection — so messages it sent before dying still arrive.

use mc_core::Input;

use super::{Event, Simulation};
use crate::faults::{Fault, site_groups};
use crate::metrics::Via;
use crate::queue::{millis, secs};
use crate::trace::What;

impl Simulation {
    /// Whether `link` should be open: both ends alive and in the same group.
    fn wanted(&self, link: usize) -> bool {
        let l = self.links.get(link);
        self.hosts[l.a].core.is_some()
            && self.hosts[l.b].core.is_some()
            && self.groups[l.a] == self.groups[l.b]
    }

    /// Starts opening `link` if it should be open and is not.
    pub(super) fn connect(&mut self, link: usize) {
        let l = self.links.get(link);
        if l.up || l.connecting || !self.wanted(link) {
            return;
        }
        let (a, b) = (l.a, l.b);
        let delay = self.net.handshake_us(a, b);
        let l = self.links.get_mut(link);
        l.connecting = true;
        l.epoch += 1;
        let epoch = l.epoch;
        self.queue
            .push(self.now + delay, Event::LinkUp { link, epoch });
    }

    pub(super) fn link_up(&mut self, link: usize, epoch: u32) {
        let wanted = self.wanted(link);
        let l = self.links.get_mut(link);
        if l.epoch != epoch || l.up {
            return;
        }
        l.connecting = false;
        if !wanted {
            return;
        }
        l.up = true;
        l.epoch += 1;
        let (a, b) = (l.a, l.b);
        self.notify_later(a, b, true, self.now);
        self.notify_later(b, a, true, self.now);
    }

    /// Closes an open `link` now; both ends are told.
    fn close(&mut self, link: usize) {
        let l = self.links.get_mut(link);
        if !l.up {
            return;
        }
        l.up = false;
        l.epoch += 1;
        let (a, b) = (l.a, l.b);
        self.notify_later(a, b, false, self.now);
        self.notify_later(b, a, false, self.now);
    }

    /// Abandons a connection attempt.
    fn cancel(&mut self, link: usize) {
        let l = self.links.get_mut(link);
        if l.connecting {
            l.connecting = false;
            l.epoch += 1;
        }
    }

    pub(super) fn link_down(&mut self, link: usize, epoch: u32) {
        if self.links.get(link).epoch == epoch {
            self.close(link);
        }
    }

    fn notify_later(&mut self, node: usize, peer: usize, up: bool, at: crate::queue::Micros) {
        if self.hosts[node].core.is_some() {
            let incarnation = self.hosts[node].incarnation;
            self.queue.push(
                at,
                Event::Notify {
                    node,
                    incarnation,
                    peer,
                    up,
                },
            );
        }
    }

    pub(super) fn notify(&mut self, node: usize, incarnation: u32, peer: usize, up: bool) {
        if self.hosts[node].incarnation != incarnation || self.hosts[node].core.is_none() {
            return;
        }
        let peer_id = self.hosts[peer].id.clone();
        if up {
            self.trace.record(self.now, node, What::Up { peer });
            self.input(node, Input::PeerConnected(peer_id), Via::Sync);
        } else {
            self.trace.record(self.now, node, What::Down { peer });
            self.hosts[node].router.peer_down(peer);
            self.input(node, Input::PeerDisconnected(peer_id), Via::Sync);
        }
    }

    /// Puts every node in a partition group and opens or closes links to match.
    fn regroup(&mut self, groups: Vec<u32>) {
        self.groups = groups;
        for link in 0..self.links.len() {
            let wanted = self.wanted(link);
            let l = self.links.get(link);
            if l.up && !wanted {
                self.close(link);
            } else if l.connecting && !wanted {
                self.cancel(link);
            } else {
                self.connect(link);
            }
        }
    }

    pub(super) fn fault(&mut self, index: usize) {
        let fault = self.fault_spec(index);
        self.trace.record(
            self.now,
            usize::MAX,
            What::Fault {
                name: fault.name(),
                end: false,
            },
        );
        let alive: Vec<bool> = self.hosts.iter().map(|h| h.core.is_some()).collect();
        match &fault {
            Fault::Partition { groups, .. } => {
                self.partitioned_since.get_or_insert(self.now);
                let by_site = site_groups(groups);
                let groups = self.site_of.iter().map(|s| by_site[*s]).collect();
                self.regroup(groups);
            }
            Fault::Isolate { site, .. } => {
                self.partitioned_since.get_or_insert(self.now);
                let site = crate::regions::site_index(site).unwrap_or(usize::MAX);
                let groups = self.site_of.iter().map(|s| u32::from(*s == site)).collect();
                self.regroup(groups);
            }
            Fault::Heal { .. } => {
                if let Some(since) = self.partitioned_since.take() {
                    self.degraded.push((since, self.now));
                }
                self.regroup(vec![0; self.hosts.len()]);
                self.open_window("heal".into());
            }
            Fault::Crash {
                target,
                restart_after_s,
                ..
            } => {
                let nodes = target.resolve(&self.site_of, &alive, &mut self.fault_rng);
                for n in &nodes {
                    self.crash(*n);
                }
                // A node that stays down only disturbs its peers until they notice.
                let down_for = restart_after_s.unwrap_or(1.0);
                self.degraded.push((self.now, self.now + secs(down_for)));
                if let Some(after) = restart_after_s {
                    self.queue
                        .push(self.now + secs(*after), Event::FaultEnd { index, nodes });
                }
            }
            Fault::Pause {
                target, duration_s, ..
            } => {
                let until = self.now + secs(*duration_s);
                self.degraded.push((self.now, until));
                for n in target.resolve(&self.site_of, &alive, &mut self.fault_rng) {
                    self.hosts[n].paused_until = self.hosts[n].paused_until.max(until);
                }
            }
            Fault::ClockSkew {
                target, skew_ms, ..
            } => {
                for n in target.resolve(&self.site_of, &alive, &mut self.fault_rng) {
                    self.hosts[n].skew_ms += skew_ms;
                    self.reschedule_timers(n);
                }
            }
            Fault::Duplicate {
                duration_s,
                probability,
                direct,
                ..
            } => {
                self.net.disturbance.duplicate = *probability;
                self.net.disturbance.direct |= *direct;
                self.end_later(index, *duration_s);
            }
            Fault::Reorder {
                duration_s,
                probability,
                max_delay_ms,
                direct,
                ..
            } => {
                self.net.disturbance.reorder = *probability;
                self.net.disturbance.reorder_max_ms = *max_delay_ms;
                self.net.disturbance.direct |= *direct;
                self.end_later(index, *duration_s);
            }
            Fault::Loss {
                duration_s,
                probability,
                ..
            } => {
                self.net.disturbance.extra_loss = *probability;
                self.end_later(index, *duration_s);
            }
            Fault::DropSync { target, .. } => {
                for n in target.resolve(&self.site_of, &alive, &mut self.fault_rng) {
                    self.hosts[n].drop_sync = true;
                }
            }
            Fault::UnsafeAcks { target, .. } => {
                for n in target.resolve(&self.site_of, &alive, &mut self.fault_rng) {
                    self.hosts[n].unsafe_acks = true;
                }
            }
        }
    }

    fn end_later(&mut self, index: usize, after_s: f64) {
        self.queue.push(
            self.now + secs(after_s),
            Event::FaultEnd {
                index,
                nodes: Vec::new(),
            },
        );
    }

    pub(super) fn fault_end(&mut self, index: usize, nodes: &[usize]) {
        let fault = self.fault_spec(index);
        self.trace.record(
            self.now,
            usize::MAX,
            What::Fault {
                name: fault.name(),
                end: true,
            },
        );
        let d = &mut self.net.disturbance;
        match fault {
            Fault::Duplicate { .. } => d.duplicate = 0.0,
            Fault::Reorder { .. } => d.reorder = 0.0,
            Fault::Loss { .. } => d.extra_loss = 0.0,
            _ => {}
        }
        if d.duplicate == 0.0 && d.reorder == 0.0 {
            d.direct = false;
        }
        if let Fault::Crash { .. } = fault {
            let restarted: Vec<usize> =
                nodes.iter().copied().filter(|n| self.restart(*n)).collect();
            if !restarted.is_empty() {
                let names: Vec<String> = restarted.iter().map(|n| format!("n{n:04}")).collect();
                self.open_window(format!("restart {}", names.join(",")));
            }
        }
    }

    /// Kills node `n`: its core, unflushed writes, held replies, timers and
    /// gossip state are gone; its peers notice shortly after.
    fn crash(&mut self, n: usize) {
        let Some(core) = self.hosts[n].core.take() else {
            return;
        };
        super::finish::add_counters(&mut self.hosts[n].past_counters, core.counters());
        let host = &mut self.hosts[n];
        host.incarnation += 1;
        host.router = crate::gossip::Router::new();
        host.paused_until = 0;
        let loss = host.disk.crash();
        self.stats.crashes += 1;
        self.stats.lost_batches += loss.batches as u64;
        self.stats.lost_replies += loss.replies as u64;
        self.writes.node_down(n, self.now);
        if let Some(l) = self.learning.as_mut() {
            l.crashed(n);
        }
        self.trace.record(self.now, n, What::Crash);
        let jitter = millis(self.net.config().jitter_ms);
        for (peer, link) in self.links.neighbours(n).to_vec() {
            let l = self.links.get(link);
            if l.up {
                let epoch = l.epoch;
                let at = self.now + self.net.one_way_us(n, peer) + jitter + 1;
                self.queue.push(at, Event::LinkDown { link, epoch });
            } else {
                self.cancel(link);
            }
        }
    }

    /// Restarts crashed node `n` from its disk; returns whether it did.
    fn restart(&mut self, n: usize) -> bool {
        if self.hosts[n].core.is_some() {
            return false;
        }
        if let Err(e) = self.boot(n) {
            self.violate(crate::checker::Invariant::Restart, Some(n), e.to_string());
            return false;
        }
        self.stats.restarts += 1;
        if let Some(l) = self.learning.as_mut() {
            l.restarted(n);
        }
        self.trace.record(self.now, n, What::Restart);
        self.check_restored_writes(n);
        for (_, link) in self.links.neighbours(n).to_vec() {
            self.connect(link);
        }
        true
    }
}
