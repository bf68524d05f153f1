//! One simulated node's process: its core, store, timers and gossip router,
//! and how the engine feeds the core and applies what it asks for.

use std::collections::BTreeMap;

use mc_core::{ApiResponse, Counters, Input, Millis, Node, Output, Timer};
use mc_protocols::NodeId;
use rand::Rng;

use super::{EPOCH_MS, Event, Simulation, learn};
use crate::Error;
use crate::checker::Invariant;
use crate::disk::{Disk, Reply};
use crate::gossip::Router;
use crate::metrics::Via;
use crate::queue::{Micros, millis};
use crate::regions;
use crate::scenario::Scenario;
use crate::trace::What;

/// A node's process and what survives it (the disk).
#[derive(Debug)]
pub(super) struct Host {
    pub id: NodeId,
    config: mc_core::Config,
    /// `None` while crashed.
    pub core: Option<Node>,
    /// Bumped at every crash; events of an older incarnation are ignored.
    pub incarnation: u32,
    pub disk: Disk,
    /// Current timer per kind: generation and the core's deadline (node clock).
    timers: BTreeMap<Timer, (u64, Millis)>,
    generation: u64,
    pub paused_until: Micros,
    /// This node's clock minus virtual time.
    pub skew_ms: i64,
    last_now: Millis,
    pub router: Router,
    /// Test hook: the network drops every sync message this node sends.
    pub drop_sync: bool,
    /// Test hook: replies go out without waiting for the flush.
    pub unsafe_acks: bool,
    /// When the document last changed.
    pub last_change: Micros,
    /// Counters of earlier incarnations.
    pub past_counters: Counters,
}

impl Host {
    pub fn new(index: usize, scenario: &Scenario, site: usize) -> Self {
        let mut config = mc_core::Config::new(format!("{}-{index:04}", regions::SITES[site].name));
        config.gossip = scenario.node.gossip;
        config.sync_interval_ms = scenario.node.sync_interval_ms;
        // Without a campaign, no learning timer: knowledge scenarios run as
        // they always have.
        config.learning_tick_ms = scenario.learning.as_ref().map(|l| l.tick_ms);
        Self {
            id: node_id(index),
            config,
            core: None,
            incarnation: 0,
            disk: Disk::new(),
            timers: BTreeMap::new(),
            generation: 0,
            paused_until: 0,
            skew_ms: 0,
            last_now: 0,
            router: Router::new(),
            drop_sync: false,
            unsafe_acks: false,
            last_change: 0,
            past_counters: Counters::default(),
        }
    }
}

/// The name of node `index`.
pub(super) fn node_id(index: usize) -> NodeId {
    NodeId::new(format!("n{index:04}"))
}

impl Simulation {
    /// Starts node `n`'s core from what its disk holds.
    pub(super) fn boot(&mut self, n: usize) -> Result<(), Error> {
        let seed = self.seed_rng.next_u64();
        let now = self.node_now(n);
        let secret = self.learning.as_ref().map(|l| l.secret(n));
        let host = &mut self.hosts[n];
        let mut node = Node::new(
            host.config.clone(),
            host.id.clone(),
            host.disk.restored(),
            seed,
            now,
        )
        .map_err(|source| Error::Start {
            node: host.id.to_string(),
            source: Box::new(source),
        })?;
        if let Some(secret) = secret {
            // The node's identity key, which survives restarts.
            node.set_signing_key(secret);
        }
        host.core = Some(node);
        host.router = Router::new();
        host.timers.clear();
        self.drain(n, Via::Sync);
        let phase =
            millis(crate::rng::unit(&mut self.gossip_rng) * self.scenario.gossip.heartbeat_ms);
        let incarnation = self.hosts[n].incarnation;
        self.queue.push(
            self.now + phase,
            Event::Heartbeat {
                node: n,
                incarnation,
            },
        );
        Ok(())
    }

    /// Node `n`'s clock: virtual time plus its skew, never going back.
    pub(super) fn node_now(&mut self, n: usize) -> Millis {
        let host = &mut self.hosts[n];
        let raw = (EPOCH_MS + self.now / 1000) as i64 + host.skew_ms;
        let now = (raw.max(0) as u64).max(host.last_now);
        host.last_now = now;
        now
    }

    /// Feeds `input` to node `n`'s core and applies its outputs; `via` says
    /// how any write that becomes visible got there.
    pub(super) fn input(&mut self, n: usize, input: Input, via: Via) {
        let now = self.node_now(n);
        let Some(core) = self.hosts[n].core.as_mut() else {
            return;
        };
        core.handle(now, input);
        self.drain(n, via);
    }

    /// Applies every output node `n`'s core has queued, in order.
    pub(super) fn drain(&mut self, n: usize, via: Via) {
        let mut changed = false;
        while let Some(output) = self.hosts[n].core.as_mut().and_then(Node::poll_output) {
            match output {
                Output::Send { to, bytes } => {
                    let bytes = self.on_the_wire(n, bytes);
                    if !self.send(n, &to, bytes) {
                        self.feedback(n, Input::SendFailed(to));
                    }
                }
                Output::Broadcast { topic, bytes } => {
                    if !self.broadcast(n, bytes) {
                        self.feedback(n, Input::BroadcastFailed(topic));
                    }
                }
                Output::Persist(ops) => {
                    changed = true;
                    let latency = self.disk_latency();
                    let (batch, done) = self.hosts[n].disk.write(ops, self.now, latency);
                    let incarnation = self.hosts[n].incarnation;
                    self.queue.push(
                        done,
                        Event::Flushed {
                            node: n,
                            incarnation,
                            batch,
                        },
                    );
                }
                Output::Reply {
                    id: learn::CAMPAIGN_REQUEST,
                    response,
                } => self.campaign_created(n, response),
                Output::Reply { id, response } => {
                    if self.hosts[n].unsafe_acks {
                        self.release(n, (id, response));
                    } else if let Some(reply) = self.hosts[n].disk.reply((id, response)) {
                        self.release(n, reply);
                    }
                }
                Output::ScheduleTimer { timer, at } => self.schedule_timer(n, timer, at),
                Output::Train(job) => self.train(n, job),
                Output::ModelReady(model) => self.model_ready(n, model),
                Output::RoundClosed { campaign, record } => self.round_output(n, campaign, record),
            }
        }
        if changed {
            self.hosts[n].last_change = self.now;
            self.check_arrivals(n, via);
        }
    }

    /// An input the driver gives the core while applying its outputs (a
    /// failed send or broadcast), as the real runtime does.
    fn feedback(&mut self, n: usize, input: Input) {
        let now = self.node_now(n);
        if let Some(core) = self.hosts[n].core.as_mut() {
            core.handle(now, input);
        }
    }

    /// Sends an API reply to the client: the write is acknowledged.
    fn release(&mut self, n: usize, (id, response): Reply) {
        let Ok(id) = u32::try_from(id) else {
            return;
        };
        let ok = matches!(response, Ok(ApiResponse::Entry(_)));
        self.writes.acknowledged(id, self.now, ok);
        self.trace.record(self.now, n, What::Ack { write: id });
    }

    pub(super) fn flushed(&mut self, n: usize, incarnation: u32, batch: u64) {
        if self.hosts[n].incarnation != incarnation || self.hosts[n].core.is_none() {
            return;
        }
        self.trace.record(self.now, n, What::Flushed);
        for reply in self.hosts[n].disk.flushed(batch) {
            self.release(n, reply);
        }
    }

    fn schedule_timer(&mut self, n: usize, timer: Timer, at: Millis) {
        let host = &mut self.hosts[n];
        host.generation += 1;
        host.timers.insert(timer, (host.generation, at));
        self.push_timer(n, timer);
    }

    /// Queues timer `timer` of node `n` at the virtual time its node clock reaches its deadline.
    fn push_timer(&mut self, n: usize, timer: Timer) {
        let host = &self.hosts[n];
        let Some((generation, at)) = host.timers.get(&timer).copied() else {
            return;
        };
        let virtual_ms = at as i64 - host.skew_ms - EPOCH_MS as i64;
        let when = (virtual_ms.max(0) as u64 * 1000).max(self.now);
        let incarnation = host.incarnation;
        self.queue.push(
            when,
            Event::Timer {
                node: n,
                incarnation,
                timer,
                generation,
            },
        );
    }

    /// After a clock step, timers fire when the node's new clock reaches them.
    pub(super) fn reschedule_timers(&mut self, n: usize) {
        let timers: Vec<Timer> = self.hosts[n].timers.keys().copied().collect();
        for timer in timers {
            let host = &mut self.hosts[n];
            host.generation += 1;
            if let Some(entry) = host.timers.get_mut(&timer) {
                entry.0 = host.generation;
            }
            self.push_timer(n, timer);
        }
    }

    pub(super) fn fire_timer(&mut self, n: usize, incarnation: u32, timer: Timer, generation: u64) {
        let host = &mut self.hosts[n];
        if host.incarnation != incarnation
            || host.timers.get(&timer).map(|t| t.0) != Some(generation)
        {
            return;
        }
        host.timers.remove(&timer);
        self.trace.record(self.now, n, What::Timer(timer));
        self.input(n, Input::TimerExpired(timer), Via::Sync);
    }

    /// Checks an output against its transport limit.
    pub(super) fn check_size(&mut self, n: usize, len: usize, limit: usize, what: &str) -> bool {
        if !self.scenario.checks.message_size {
            return true;
        }
        match crate::checker::oversize(len, limit, what) {
            Some(message) => {
                let message = format!("n{n:04}: {message}");
                self.violate(Invariant::MessageSize, Some(n), message);
                false
            }
            None => true,
        }
    }
}
