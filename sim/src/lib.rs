//! # mc-sim — the deterministic simulator of Mission Control Mesh
//!
//! `mc-sim` runs hundreds to thousands of region nodes in one process, each
//! one the real sans-IO core that `mc-node` ships ([`mc_core::Node`]),
//! over a simulated WAN, gossip layer and disk, with faults on a timeline and
//! invariant checkers that run while the simulation does. Virtual time moves
//! from event to event, so a run is much faster than real time, and every
//! random choice comes from one seed, so a run — including a failing one —
//! replays exactly: `mc-sim run SCENARIO --seed N`. This is the
//! FoundationDB / TigerBeetle VOPR way of testing a distributed system.
//!
//! ```text
//! mc-sim list                                           # built-in scenarios
//! mc-sim run partition-heal-100 --seed 7 [--json report.json]
//! mc-sim run fl-byzantine-50 --seed 1                   # federated learning, Byzantine participants
//! mc-sim sweep --nodes 10,30,100,300,1000 [--scenario partition-heal-100] [--out DIR]
//! ```
//!
//! A run prints a summary (and writes a JSON [`Report`] with `--json`); a
//! violated invariant stops it, prints the seed, the replay command and the
//! last events, and `mc-sim` exits with status 1.
//!
//! # Layout
//!
//! - [`queue`] — the event queue: a binary heap keyed by virtual time in
//!   microseconds, ties broken by a sequence number.
//! - [`engine`] — [`Simulation`], the event loop. Nodes are a `Vec` indexed by
//!   a dense number with a `BTreeMap` from the cores' `NodeId`s to it; every
//!   collection the engine iterates is ordered (`BTreeMap`, `BTreeSet`,
//!   `Vec`), never a `HashMap`.
//! - [`rng`] — one seed, one ChaCha8 stream per purpose (topology, network,
//!   gossip, workload, faults, disk, node seeds).
//! - [`regions`] — the sites nodes run at and the measured round-trip times
//!   between them (the source of the figures is documented there).
//! - [`network`] — latency, jitter, loss, bandwidth, message-size accounting.
//! - [`links`] — the topology (each node dials `peers` random others) and the
//!   state of each connection.
//! - [`gossip`] — a gossipsub-like mesh router per node.
//! - [`disk`] — the store, flush latency and what a crash loses.
//! - [`faults`], [`workload`], [`scenario`] — the scenario file format.
//! - [`learning`] — a federated-learning campaign (`[learning]`): each
//!   node's organisation and data, local training with `mc-learn`, and the
//!   Byzantine participants' attacks.
//! - [`checker`], [`trace`], [`metrics`], [`report`] — invariants, the event
//!   trace printed on a violation, write tracking, the report.
//! - [`sweep`], [`plot`] — a scenario at several cluster sizes: a table and
//!   plotters charts (SVG and PNG).
//!
//! # The event loop
//!
//! [`Simulation::run`] boots every core at virtual time 0, opens every link
//! (after a handshake of `handshake_rtts` round trips), schedules the
//! workloads, the faults and the end, then repeatedly pops the earliest event
//! and dispatches it. Feeding a core is always the same: `handle(now, input)`,
//! then drain `poll_output()` and apply each output — `Send` to the network,
//! `Broadcast` to the node's gossip router, `Persist` to its disk,
//! `ScheduleTimer` back onto the queue, `Reply` to the client once every
//! earlier `Persist` batch is flushed. The core sees
//! `now = 2026-01-01T00:00Z + virtual time + the node's clock skew`, never
//! going backwards. A paused node's events wait, in order, until it resumes.
//!
//! # The network model
//!
//! Latency is half the round-trip time between the two nodes' sites (IBM
//! Cloud's published inter-region averages, 9–328 ms) plus uniform jitter.
//! Each node has an egress queue drained at `bandwidth_mbps`. A core's
//! point-to-point `Send` (request-response over TCP in the real node) is
//! reliable and in order per link; packet loss turns into retransmission
//! delay (TCP's RTO, at least 200 ms, doubling). Across a partition, or to a
//! crashed node, the message is dropped and the sender gets `SendFailed`.
//! Sizes include a fixed allowance for libp2p framing; TCP/IP headers are not
//! counted.
//!
//! # The gossip model
//!
//! Every node runs a [`gossip::Router`] over its open connections: a mesh of
//! degree `d` (kept between `d_low` and `d_high` with GRAFT/PRUNE at a 700 ms
//! heartbeat), eager push along the mesh, flood publishing of a node's own
//! messages to every connected peer (as `mc-node` configures gossipsub), and
//! lazy pull — IHAVE of the last three heartbeats' ids to `d_lazy` non-mesh
//! peers, IWANT for what is missing. A node hands each message to its core
//! once; later copies count as duplicates. Where it differs from the real
//! gossipsub: no peer scoring, no IDONTWANT, no fanout or backoff, GRAFTs are
//! not checked against outbound quotas, and frames are datagrams the network
//! may lose, duplicate or reorder, while real gossipsub rides on TCP and loses
//! a message only when a connection or a full send queue drops it — so the
//! simulated `loss` stands for those drops, and the anti-entropy layer has
//! to repair them, which is what the simulator is there to show.
//!
//! # The disk model
//!
//! `Persist` batches go to an in-memory store as unflushed writes; each flush
//! takes `flush_min_ms`–`flush_max_ms` and completes in order. A reply waits
//! for every batch before it. A crash drops the core, its unflushed batches,
//! its held replies, its timers and its gossip state; a restart builds a new
//! core with `Restored::from_pairs` over what was durable and a fresh seed.
//!
//! # Federated learning
//!
//! A scenario with a `[learning]` section turns the cores' learning timer on
//! and gives every node an organisation's synthetic data; at `start_at_s` one
//! node creates a campaign with every node as a participant, and the cores
//! run it as they do in production — the declaration spreads through the
//! knowledge document, updates are signed and sent point to point, each
//! node's collector checks them and aggregates at the round's end. The
//! engine serves the cores' `Output::Train` with the same `mc-learn` calls as
//! `mc-node`'s learner, on the CPU with one torch thread, so the report stays
//! byte-identical for a seed; the result reaches the core after a simulated
//! compute time. Byzantine participants corrupt their weights before their
//! core signs them, or have their signed updates broken on the wire. See
//! [`learning`] for the format and [`checker`] for the four learning checks.
//!
//! # Faults and checks
//!
//! Partitions (site groups, or one site isolated), heals, crashes with or
//! without restart, pauses, clock steps, duplication, reordering, extra loss,
//! and two test hooks that break a node on purpose — `drop-sync` (its sync
//! messages vanish) and `unsafe-acks` (it acknowledges writes before they are
//! durable) — see [`faults`]. The built-in `broken-sync-100` scenario is
//! expected to fail. The invariants — message sizes, no lost acknowledged write,
//! convergence within `2 × sync_interval + max one-way latency` after every
//! heal and restart — are described in [`checker`].
//!
//! # Replaying a seed
//!
//! Everything random is drawn from the seed's streams, the queue breaks ties
//! by insertion order, the cores get their seeds from the simulator, and no
//! wall-clock time enters the run (the wall time printed after a run is not
//! in the JSON report). So `mc-sim run SCENARIO --seed N` reproduces a run
//! event for event; a failing run prints exactly that command.

pub mod checker;
pub mod disk;
pub mod engine;
pub mod faults;
pub mod gossip;
pub mod learning;
pub mod links;
pub mod metrics;
pub mod network;
pub mod plot;
pub mod queue;
pub mod regions;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod sweep;
pub mod trace;
pub mod workload;

pub use checker::Violation;
pub use engine::Simulation;
pub use report::Report;
pub use scenario::Scenario;

/// Everything that can stop a simulation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scenario is neither a built-in name nor an existing file.
    #[error("no scenario named {0:?}: not a built-in one (see `mc-sim list`) nor a file")]
    UnknownScenario(String),
    /// A scenario is not valid TOML for the format.
    #[error("cannot parse scenario {origin}: {source}")]
    Parse {
        /// The file or built-in name.
        origin: String,
        /// The TOML error.
        source: Box<toml::de::Error>,
    },
    /// A scenario's values do not make sense together.
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// A node's core refused to start from its store.
    #[error("node {node} cannot start: {source}")]
    Start {
        /// The node.
        node: String,
        /// Why.
        source: Box<mc_core::StartError>,
    },
    /// An invariant was violated (the run stopped there).
    #[error("{0}")]
    Violation(Box<Violation>),
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("cannot draw {path}: {detail}")]
    Plot {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
}

impl Error {
    /// The violation, if the run stopped on one.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Error::Violation(v) => Some(v),
            _ => None,
        }
    }
}

/// Runs `scenario` with `seed`; `origin` is how it was named (for the replay command).
pub fn run(scenario: Scenario, origin: &str, seed: u64) -> Result<Report, Error> {
    Simulation::new(scenario, origin, seed)?.run()
}
