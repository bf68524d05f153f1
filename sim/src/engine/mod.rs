//! The discrete-event loop that drives every simulated node.
//!
//! [`Simulation::run`] pops the earliest event from the queue, advances
//! the virtual clock to it, and dispatches it: a message reaching a node, a
//! core timer, a gossip heartbeat, a disk flush, a client request, a fault, a
//! convergence deadline. Anything an event causes is pushed back on the queue
//! at the time it will happen. After every event the engine looks for a
//! violation recorded by the checks and stops the run if there is one.
//!
//! The submodules split the work by role: `host` feeds one core and applies
//! its outputs, `net` moves messages and gossip frames, `chaos` applies
//! faults and manages connections, `checks` runs the invariants, `learn`
//! serves a learning campaign (local training, Byzantine participants, its
//! checks), and `finish` builds the report.

mod chaos;
mod checks;
mod finish;
mod host;
mod learn;
mod net;

use std::collections::BTreeMap;

use mc_core::{Timer, TrainResult};
use mc_protocols::NodeId;
use rand::rngs::ChaCha8Rng;

use crate::checker::{Convergence, Invariant, Violation, Window};
use crate::gossip::{Frame, Messages};
use crate::links::Table;
use crate::metrics::Writes;
use crate::network::Model;
use crate::queue::{Micros, Queue, millis, secs};
use crate::report::Report;
use crate::rng::{Streams, unit};
use crate::scenario::Scenario;
use crate::trace::{Ring, What};
use crate::workload::Generator;
use crate::{Error, faults};

use host::Host;
use learn::Learning;

/// Virtual time zero, as the cores see it: 2026-01-01T00:00:00Z in Unix ms.
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// Something due at a point of virtual time.
#[derive(Debug)]
enum Event {
    /// A point-to-point message reaches `to`.
    Deliver {
        from: usize,
        to: usize,
        link: usize,
        epoch: u32,
        bytes: Vec<u8>,
    },
    /// A gossip frame reaches `to`.
    Frame {
        from: usize,
        to: usize,
        link: usize,
        epoch: u32,
        frame: Frame,
    },
    /// A core timer fires (if still the current one of that incarnation).
    Timer {
        node: usize,
        incarnation: u32,
        timer: Timer,
        generation: u64,
    },
    /// The gossip layer's heartbeat.
    Heartbeat { node: usize, incarnation: u32 },
    /// A store flush completed.
    Flushed {
        node: usize,
        incarnation: u32,
        batch: u64,
    },
    /// A connection finishes opening.
    LinkUp { link: usize, epoch: u32 },
    /// A connection closes (a crashed peer is noticed).
    LinkDown { link: usize, epoch: u32 },
    /// A node learns that a connection opened or closed.
    Notify {
        node: usize,
        incarnation: u32,
        peer: usize,
        up: bool,
    },
    /// Workload `index` issues its next request.
    Workload { index: usize },
    /// Fault `index` of the timeline starts.
    Fault { index: usize },
    /// Fault `index` ends for `nodes` (restart, window closes).
    FaultEnd { index: usize, nodes: Vec<usize> },
    /// Convergence deadline of window `index`.
    Deadline { index: usize },
    /// `node` creates the scenario's learning campaign.
    CreateCampaign { node: usize },
    /// `node`'s local training is done: its core gets the result.
    Trained {
        node: usize,
        incarnation: u32,
        result: TrainResult,
    },
    /// The run ends.
    End,
}

impl Event {
    /// The node whose process handles the event (paused nodes defer it).
    fn host(&self) -> Option<usize> {
        match self {
            Event::Deliver { to, .. } | Event::Frame { to, .. } => Some(*to),
            Event::Timer { node, .. }
            | Event::Heartbeat { node, .. }
            | Event::Flushed { node, .. }
            | Event::Notify { node, .. }
            | Event::CreateCampaign { node }
            | Event::Trained { node, .. } => Some(*node),
            _ => None,
        }
    }
}

/// Counters of the run that are not the network's or the writes'.
#[derive(Debug, Default, Clone)]
struct Stats {
    events: u64,
    gossip_delivered: u64,
    gossip_duplicates: u64,
    crashes: u64,
    restarts: u64,
    lost_batches: u64,
    lost_replies: u64,
    writes_skipped: u64,
    writes_refused: u64,
    deferred: u64,
}

/// One run of a scenario with one seed.
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    origin: String,
    seed: u64,
    now: Micros,
    end: Micros,
    queue: Queue<Event>,
    hosts: Vec<Host>,
    index: BTreeMap<NodeId, usize>,
    site_of: Vec<usize>,
    links: Table,
    groups: Vec<u32>,
    net: Model,
    messages: Messages,
    gossip_rng: ChaCha8Rng,
    fault_rng: ChaCha8Rng,
    disk_rng: ChaCha8Rng,
    seed_rng: ChaCha8Rng,
    workloads: Vec<Generator>,
    writes: Writes,
    trace: Ring,
    windows: Vec<Window>,
    convergence: Vec<Convergence>,
    /// Intervals with a partition, a crashed node awaiting restart or a paused node.
    degraded: Vec<(Micros, Micros)>,
    /// Start of the partition in force, if any.
    partitioned_since: Option<Micros>,
    bound: Micros,
    violation: Option<Violation>,
    stats: Stats,
    finished: bool,
    scratch: Vec<usize>,
    /// The learning campaign, when the scenario has one.
    learning: Option<Box<Learning>>,
}

impl Simulation {
    /// Prepares a run; `origin` is how the scenario was named on the command
    /// line (a built-in name or a path), for the replay command.
    pub fn new(scenario: Scenario, origin: &str, seed: u64) -> Result<Self, Error> {
        scenario.validate()?;
        let streams = Streams::new(seed);
        let n = scenario.nodes;
        let site_of = scenario.site_of();
        let learning = match &scenario.learning {
            Some(config) => Some(Box::new(Learning::new(config, n, &streams)?)),
            None => None,
        };
        let links = if learning.is_some() {
            // Updates go only to connected participants: members dial each other.
            Table::from_edges(n, (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))))
        } else {
            Table::random(n, scenario.network.peers, &mut streams.stream("topology"))
        };
        let net = Model::new(
            scenario.network.clone(),
            site_of.clone(),
            streams.stream("network"),
        );
        let end = secs(scenario.duration_s);
        let default_stop = end.saturating_sub(secs(scenario.settle_s()));
        let workloads = scenario
            .workload
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                Generator::new(
                    spec.clone(),
                    streams.stream(&format!("workload/{i}")),
                    default_stop,
                )
            })
            .collect();
        let hosts = (0..n)
            .map(|i| Host::new(i, &scenario, site_of[i]))
            .collect::<Vec<_>>();
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.id.clone(), i))
            .collect();
        let bound = millis(scenario.convergence_bound_ms());
        Ok(Self {
            origin: origin.to_string(),
            seed,
            now: 0,
            end,
            queue: Queue::new(),
            hosts,
            index,
            site_of,
            links,
            groups: vec![0; n],
            net,
            messages: Messages::default(),
            gossip_rng: streams.stream("gossip"),
            fault_rng: streams.stream("faults"),
            disk_rng: streams.stream("disk"),
            seed_rng: streams.stream("node-seeds"),
            workloads,
            writes: Writes::new(n),
            trace: Ring::new(),
            windows: Vec::new(),
            convergence: Vec::new(),
            degraded: Vec::new(),
            partitioned_since: None,
            bound,
            violation: None,
            stats: Stats::default(),
            finished: false,
            scratch: Vec::new(),
            learning,
            scenario,
        })
    }

    /// Runs to the end (or to the first violated invariant).
    pub fn run(mut self) -> Result<Report, Error> {
        self.start()?;
        while let Some((at, event)) = self.queue.pop() {
            self.now = at;
            self.stats.events += 1;
            self.dispatch(event);
            if let Some(v) = self.violation.take() {
                return Err(Error::Violation(Box::new(v)));
            }
            if self.finished {
                break;
            }
        }
        Ok(self.report())
    }

    fn start(&mut self) -> Result<(), Error> {
        for n in 0..self.hosts.len() {
            self.boot(n)?;
        }
        for link in 0..self.links.len() {
            self.connect(link);
        }
        for index in 0..self.workloads.len() {
            if let Some(at) = self.workloads[index].next_after(None) {
                self.queue.push(at, Event::Workload { index });
            }
        }
        for (index, fault) in self.scenario.faults.iter().enumerate() {
            self.queue.push(secs(fault.at_s()), Event::Fault { index });
        }
        if let Some(l) = &self.scenario.learning {
            let node = l.creator;
            self.queue
                .push(secs(l.start_at_s), Event::CreateCampaign { node });
        }
        self.queue.push(self.end, Event::End);
        Ok(())
    }

    fn dispatch(&mut self, event: Event) {
        if let Some(node) = event.host() {
            let until = self.hosts[node].paused_until;
            if until > self.now {
                // A paused process handles nothing; its inputs wait, in order.
                self.stats.deferred += 1;
                self.queue.push(until, event);
                return;
            }
        }
        match event {
            Event::Deliver {
                from,
                to,
                link,
                epoch,
                bytes,
            } => self.deliver(from, to, (link, epoch), bytes),
            Event::Frame {
                from,
                to,
                link,
                epoch,
                frame,
            } => self.deliver_frame(from, to, (link, epoch), frame),
            Event::Timer {
                node,
                incarnation,
                timer,
                generation,
            } => {
                self.fire_timer(node, incarnation, timer, generation);
            }
            Event::Heartbeat { node, incarnation } => self.heartbeat(node, incarnation),
            Event::Flushed {
                node,
                incarnation,
                batch,
            } => self.flushed(node, incarnation, batch),
            Event::LinkUp { link, epoch } => self.link_up(link, epoch),
            Event::LinkDown { link, epoch } => self.link_down(link, epoch),
            Event::Notify {
                node,
                incarnation,
                peer,
                up,
            } => self.notify(node, incarnation, peer, up),
            Event::Workload { index } => self.workload(index),
            Event::Fault { index } => self.fault(index),
            Event::FaultEnd { index, nodes } => self.fault_end(index, &nodes),
            Event::Deadline { index } => self.deadline(index),
            Event::CreateCampaign { node } => self.create_campaign(node),
            Event::Trained {
                node,
                incarnation,
                result,
            } => self.trained(node, incarnation, result),
            Event::End => {
                self.end_checks();
                self.finished = true;
            }
        }
    }

    fn workload(&mut self, index: usize) {
        let now = self.now;
        if let Some(at) = self.workloads[index].next_after(Some(now)) {
            self.queue.push(at, Event::Workload { index });
        }
        if self.windows.iter().any(|w| w.is_quiet(now)) {
            self.stats.writes_skipped += 1;
            return;
        }
        let mut candidates: Vec<usize> = (0..self.hosts.len())
            .filter(|n| self.is_serving(*n))
            .collect();
        let alive: Vec<bool> = self.hosts.iter().map(|h| h.core.is_some()).collect();
        self.workloads[index].eligible(&mut candidates, &self.site_of, &alive);
        let Some(origin) = self.workloads[index].pick(&candidates) else {
            self.stats.writes_refused += 1;
            return;
        };
        let number = self.writes.records().len() as u64;
        let (request, key) = self.workloads[index].request(number);
        let live: Vec<usize> = (0..self.hosts.len())
            .filter(|n| self.hosts[*n].core.is_some())
            .collect();
        let id = self.writes.issue(key, origin, now, live);
        self.trace.record(now, origin, What::Write { write: id });
        self.input(
            origin,
            mc_core::Input::Api {
                id: u64::from(id),
                request,
            },
            crate::metrics::Via::Sync,
        );
    }

    /// Alive and not paused: can take a client request now.
    fn is_serving(&self, node: usize) -> bool {
        self.hosts[node].core.is_some() && self.hosts[node].paused_until <= self.now
    }

    fn violate(&mut self, invariant: Invariant, node: Option<usize>, message: String) {
        if self.violation.is_some() {
            return;
        }
        let name = invariant.name();
        self.trace
            .record(self.now, node.unwrap_or(usize::MAX), What::Check { name });
        self.violation = Some(Violation {
            invariant,
            at: self.now,
            message,
            scenario: self.origin.clone(),
            seed: self.seed,
            trace: self.trace.lines(),
        });
    }

    /// A uniform draw in `[lo, hi]` microseconds from the disk stream.
    fn disk_latency(&mut self) -> Micros {
        let d = &self.scenario.disk;
        millis(d.flush_min_ms + unit(&mut self.disk_rng) * (d.flush_max_ms - d.flush_min_ms))
    }

    /// The convergence deadline of a heal or restart at now.
    fn open_window(&mut self, label: String) {
        if !self.scenario.checks.convergence {
            return;
        }
        let index = self.windows.len();
        let deadline = self.now + self.bound;
        self.windows.push(Window {
            label,
            start: self.now,
            deadline,
        });
        self.queue.push(deadline, Event::Deadline { index });
    }

    fn fault_spec(&self, index: usize) -> faults::Fault {
        self.scenario.faults[index].clone()
    }
}
