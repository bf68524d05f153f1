//! Invariants, checked while the simulation runs (`[checks]`).
//!
//! - **Message size** — on every output: a `Send` is at most
//!   `MAX_MESSAGE_BYTES`, a `Broadcast` at most `MAX_GOSSIP_MESSAGE_BYTES`.
//! - **No lost acknowledged write** — when a crashed node restarts, every
//!   write it acknowledged is in the document it rebuilt from its store; at
//!   the end, every live node holds every acknowledged write (except writes
//!   whose only acknowledging node is still down).
//! - **Convergence** — after every heal and every restart, a deadline is set
//!   at `bound` later (default: two anti-entropy intervals plus the largest
//!   one-way latency). When it fires, every live node that is connected to
//!   the others must have identical document heads. Client writes pause
//!   between the event and its deadline, so the check is about the state the
//!   heal had to reconcile, not about writes still in flight; the measured
//!   convergence time is when the last node's document last changed. The
//!   same comparison runs at the end of the run, after a settle time without
//!   writes or faults.
//!
//! With a `[learning]` campaign (see [`crate::learning`]), four more:
//!
//! - **Model agreement** — whenever a node closes a round (its round record
//!   appears in its document), every node that closed the same round with
//!   the same accepted-set digest must hold the same model hash.
//! - **Sabotage refused** — when a node that runs its core unmodified
//!   closes a round, it accepted at most as many updates as there are
//!   participants whose updates can be valid (NaN, forged, tampered and
//!   impostor updates never are); at the end, every honest node's rejection
//!   counters show each kind of sabotage in the scenario.
//! - **Campaign completes** — at the end, every honest participant that
//!   never crashed has finished the campaign (`Output::ModelReady`).
//! - **Model quality** — at the end, the final model scores at least
//!   `score_floor` on every honest organisation's held-out rows, and
//!   `pooled_score_floor` on all of them pooled.
//!
//! A violation stops the run; [`Violation`] prints the seed, the replay
//! command and the last events (see [`crate::trace`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::queue::Micros;

/// Which invariants run (`[checks]`); all on by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Check message sizes against the transport limits.
    pub message_size: bool,
    /// Check that acknowledged writes survive crashes and reach every node.
    pub no_lost_writes: bool,
    /// Check convergence after heals, restarts and at the end.
    pub convergence: bool,
    /// Override the convergence bound (ms).
    pub bound_ms: Option<f64>,
    /// Quiet time (no writes, no faults) before the end; default twice the bound.
    pub settle_s: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            message_size: true,
            no_lost_writes: true,
            convergence: true,
            bound_ms: None,
            settle_s: None,
        }
    }
}

/// The invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Invariant {
    /// A message exceeded its transport's limit.
    MessageSize,
    /// An acknowledged write went missing.
    NoLostWrite,
    /// Live, connected nodes disagreed after the bound.
    Convergence,
    /// A crashed node could not restart from its store.
    Restart,
    /// Nodes that accepted the same updates hold different models.
    ModelAgreement,
    /// An update that can never be valid was accepted, or went uncounted.
    SabotageRefused,
    /// An honest participant did not finish the campaign.
    CampaignCompletes,
    /// The final model scored below the floor on an honest organisation.
    ModelQuality,
}

impl Invariant {
    /// Its name in reports and violations.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::MessageSize => "message-size",
            Invariant::NoLostWrite => "no-lost-write",
            Invariant::Convergence => "convergence",
            Invariant::Restart => "restart",
            Invariant::ModelAgreement => "model-agreement",
            Invariant::SabotageRefused => "sabotage-refused",
            Invariant::CampaignCompletes => "campaign-completes",
            Invariant::ModelQuality => "model-quality",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant, with what is needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// When (virtual time).
    pub at: Micros,
    /// What was wrong.
    pub message: String,
    /// The scenario's name (or path).
    pub scenario: String,
    /// The seed of the run.
    pub seed: u64,
    /// The events just before, oldest first.
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invariant violated: {} at t = {:.3} s",
            self.invariant,
            self.at as f64 / 1e6
        )?;
        writeln!(f, "  {}", self.message)?;
        writeln!(f, "  scenario {}, seed {}", self.scenario, self.seed)?;
        writeln!(
            f,
            "  replay: mc-sim run {} --seed {}",
            self.scenario, self.seed
        )?;
        writeln!(f, "  last {} events:", self.trace.len())?;
        for line in &self.trace {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

/// A convergence deadline: opened by a heal or restart at `start`, checked at `deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// What opened it, e.g. `heal` or `restart n0003`.
    pub label: String,
    /// When.
    pub start: Micros,
    /// When the check runs.
    pub deadline: Micros,
}

impl Window {
    /// Whether client writes should pause at `now`.
    pub fn is_quiet(&self, now: Micros) -> bool {
        (self.start..=self.deadline).contains(&now)
    }
}

/// The result of one convergence check, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Convergence {
    /// What the check followed: `heal`, `restart …` or `end`.
    pub after: String,
    /// When that happened (s).
    pub at_s: f64,
    /// Time from then until the last node's document last changed (ms).
    pub converged_ms: f64,
    /// The deadline it had to meet (ms).
    pub bound_ms: f64,
    /// Nodes compared.
    pub nodes: usize,
    /// Groups of mutually connected nodes compared separately.
    pub groups: usize,
}

/// One node's document heads: `(node, heads)`.
pub type Heads = (usize, Vec<String>);

/// The first disagreement among `heads[i] = (node, heads)` of one group, if any.
pub fn first_disagreement(heads: &[Heads]) -> Option<(&Heads, &Heads)> {
    let first = heads.first()?;
    heads
        .iter()
        .find(|h| h.1 != first.1)
        .map(|other| (first, other))
}

/// Why a message is over its limit, if it is.
pub fn oversize(len: usize, limit: usize, what: &str) -> Option<String> {
    (len > limit)
        .then(|| format!("{what} of {len} bytes exceeds the transport limit of {limit} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreement_names_the_first_odd_node() {
        let same = vec![(0, vec!["a".to_string()]), (1, vec!["a".to_string()])];
        assert_eq!(first_disagreement(&same), None);
        let odd = vec![
            (0, vec!["a".to_string()]),
            (1, vec!["a".to_string()]),
            (5, vec!["b".to_string()]),
        ];
        let (a, b) = first_disagreement(&odd).unwrap();
        assert_eq!((a.0, b.0), (0, 5));
        assert_eq!(first_disagreement(&[]), None);
    }

    #[test]
    fn sizes_at_the_limit_pass() {
        assert_eq!(oversize(10, 10, "x"), None);
        assert!(oversize(11, 10, "a send").unwrap().contains("11 bytes"));
    }

    #[test]
    fn a_violation_prints_its_replay_command() {
        let v = Violation {
            invariant: Invariant::Convergence,
            at: 1_500_000,
            message: "n0001 differs".into(),
            scenario: "partition-heal-100".into(),
            seed: 42,
            trace: vec!["t=1 ms".into()],
        };
        let text = v.to_string();
        assert!(text.contains("invariant violated: convergence at t = 1.500 s"));
        assert!(text.contains("mc-sim run partition-heal-100 --seed 42"));
        assert!(
            Window {
                label: "heal".into(),
                start: 5,
                deadline: 9
            }
            .is_quiet(9)
        );
    }
}
