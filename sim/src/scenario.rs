//! Scenario files: everything a run needs except its seed.
//!
//! ```toml
//! name = "partition-heal-100"
//! description = "…"
//! nodes = 100
//! duration_s = 240
//! sites = ["us-south", "us-east", "eu-de", "jp-tok"]   # default: every site; node i → sites[i % len]
//!
//! [node]                 # core configuration
//! sync_interval_ms = 5000
//! gossip = true
//!
//! [network]              # see network::Config
//! peers = 4
//! jitter_ms = 5
//! loss = 0.0
//! bandwidth_mbps = 100
//!
//! [gossip]               # see gossip::Config (defaults: mc-node's gossipsub settings)
//! [disk]                 # see disk::Config
//! [[workload]]           # see workload::Spec
//! [[faults]]             # see faults::Fault
//! [checks]               # see checker::Config
//! [learning]             # see learning::Config (off when absent)
//! ```
//!
//! The built-in scenarios live in `sim/scenarios/*.toml` and are compiled in;
//! `mc-sim run NAME` takes a built-in name or a path.

use serde::{Deserialize, Serialize};

use crate::{Error, checker, disk, faults, gossip, learning, network, regions, workload};

/// The core settings a scenario controls (`[node]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Anti-entropy interval.
    pub sync_interval_ms: u64,
    /// Whether the core publishes its changes by gossip.
    pub gossip: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            sync_interval_ms: 5_000,
            gossip: true,
        }
    }
}

/// A complete scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports and replay commands.
    pub name: String,
    /// What it exercises.
    #[serde(default)]
    pub description: String,
    /// Number of nodes (regions).
    pub nodes: usize,
    /// Virtual duration.
    pub duration_s: f64,
    /// Sites nodes are placed at, round-robin.
    #[serde(default = "regions::site_names")]
    pub sites: Vec<String>,
    /// Core settings.
    #[serde(default)]
    pub node: NodeConfig,
    /// The network.
    #[serde(default)]
    pub network: network::Config,
    /// The gossip layer.
    #[serde(default)]
    pub gossip: gossip::Config,
    /// The disks.
    #[serde(default)]
    pub disk: disk::Config,
    /// What clients do.
    #[serde(default)]
    pub workload: Vec<workload::Spec>,
    /// What goes wrong, and when.
    #[serde(default)]
    pub faults: Vec<faults::Fault>,
    /// Which invariants run.
    #[serde(default)]
    pub checks: checker::Config,
    /// A federated-learning campaign, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning: Option<learning::Config>,
}

/// The built-in scenarios: name and TOML text.
pub const BUILT_IN: [(&str, &str); 7] = [
    ("steady-100", include_str!("../scenarios/steady-100.toml")),
    (
        "partition-heal-100",
        include_str!("../scenarios/partition-heal-100.toml"),
    ),
    (
        "region-outage-100",
        include_str!("../scenarios/region-outage-100.toml"),
    ),
    (
        "lossy-wan-300",
        include_str!("../scenarios/lossy-wan-300.toml"),
    ),
    ("scale-1000", include_str!("../scenarios/scale-1000.toml")),
    (
        "broken-sync-100",
        include_str!("../scenarios/broken-sync-100.toml"),
    ),
    (
        "fl-byzantine-50",
        include_str!("../scenarios/fl-byzantine-50.toml"),
    ),
];

impl Scenario {
    /// Parses and validates a scenario; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let scenario: Scenario = toml::from_str(text).map_err(|source| Error::Parse {
            origin: origin.to_string(),
            source: Box::new(source),
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// A built-in scenario by name.
    pub fn built_in(name: &str) -> Result<Self, Error> {
        let (_, text) = BUILT_IN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::UnknownScenario(name.to_string()))?;
        Self::from_toml(text, name)
    }

    /// A built-in name, or else a path to a TOML file.
    pub fn load(name_or_path: &str) -> Result<Self, Error> {
        if BUILT_IN.iter().any(|(n, _)| *n == name_or_path) {
            return Self::built_in(name_or_path);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Err(Error::UnknownScenario(name_or_path.to_string()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: name_or_path.to_string(),
            source,
        })?;
        Self::from_toml(&text, name_or_path)
    }

    /// The site index of every node.
    pub fn site_of(&self) -> Vec<usize> {
        let sites: Vec<usize> = self
            .sites
            .iter()
            .filter_map(|s| regions::site_index(s))
            .collect();
        (0..self.nodes).map(|n| sites[n % sites.len()]).collect()
    }

    /// The largest one-way latency between sites in use, jitter included (ms).
    pub fn max_one_way_ms(&self) -> f64 {
        let sites: std::collections::BTreeSet<usize> = self.site_of().into_iter().collect();
        let mut max: f64 = 0.0;
        for a in &sites {
            for b in &sites {
                max = max.max(regions::rtt_ms(*a, *b) / 2.0);
            }
        }
        max + self.network.jitter_ms
    }

    /// How long after a heal or restart every live node must agree (ms):
    /// two anti-entropy intervals plus the largest one-way latency.
    pub fn convergence_bound_ms(&self) -> f64 {
        self.checks
            .bound_ms
            .unwrap_or(2.0 * self.node.sync_interval_ms as f64 + self.max_one_way_ms())
    }

    /// Quiet time before the end (s).
    pub fn settle_s(&self) -> f64 {
        self.checks
            .settle_s
            .unwrap_or(2.0 * self.convergence_bound_ms() / 1e3)
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |why: String| Err(Error::Invalid(format!("{}: {why}", self.name)));
        if self.nodes == 0 || self.nodes > 100_000 {
            return invalid(format!("nodes = {} (1 to 100 000)", self.nodes));
        }
        if !self.duration_s.is_finite() || self.duration_s <= 0.0 {
            return invalid("duration_s must be > 0".into());
        }
        if self.sites.is_empty() {
            return invalid("sites is empty".into());
        }
        if let Some(s) = self.sites.iter().find(|s| regions::site_index(s).is_none()) {
            return invalid(format!(
                "unknown site {s:?} (sites: {})",
                regions::site_names().join(", ")
            ));
        }
        let net = &self.network;
        if net.peers == 0
            || !(0.0..1.0).contains(&net.loss)
            || net.bandwidth_mbps.is_nan()
            || net.bandwidth_mbps <= 0.0
            || net.jitter_ms < 0.0
        {
            return invalid(
                "[network] needs peers ≥ 1, 0 ≤ loss < 1, bandwidth_mbps > 0, jitter_ms ≥ 0".into(),
            );
        }
        let g = &self.gossip;
        if !(g.d_low <= g.d && g.d <= g.d_high)
            || g.history_gossip > g.history_length
            || g.heartbeat_ms.is_nan()
            || g.heartbeat_ms <= 0.0
        {
            return invalid("[gossip] needs d_low ≤ d ≤ d_high, history_gossip ≤ history_length, heartbeat_ms > 0".into());
        }
        if self.node.sync_interval_ms == 0 {
            return invalid("[node] sync_interval_ms must be > 0".into());
        }
        if !(0.0 <= self.disk.flush_min_ms && self.disk.flush_min_ms <= self.disk.flush_max_ms) {
            return invalid("[disk] needs 0 ≤ flush_min_ms ≤ flush_max_ms".into());
        }
        for w in &self.workload {
            w.validate(self.nodes)?;
        }
        for f in &self.faults {
            f.validate(self.nodes)?;
        }
        let quiet_from = self.duration_s - self.settle_s();
        if let Some(l) = &self.learning {
            l.validate(self.nodes)?;
            if l.worst_case_end_s() > quiet_from {
                return invalid(format!(
                    "[learning] a campaign of {} rounds with {} s deadlines started at {} s may \
                     run until {:.1} s, after the settle time begins ({quiet_from:.1} s)",
                    l.rounds + 1,
                    l.round_deadline_s,
                    l.start_at_s,
                    l.worst_case_end_s()
                ));
            }
        }
        if self.checks.convergence || self.checks.no_lost_writes {
            let bound_s = self.convergence_bound_ms() / 1e3;
            for f in &self.faults {
                let last = f.ends_at_s().unwrap_or(f.at_s()).max(f.at_s());
                if last > quiet_from {
                    return invalid(format!(
                        "fault {} at {} s ends after {quiet_from:.1} s, the start of the settle time \
                         before the end ({:.1} s); lengthen duration_s or shorten [checks] settle_s",
                        f.name(),
                        f.at_s(),
                        self.settle_s()
                    ));
                }
                if last + bound_s > self.duration_s {
                    return invalid(format!(
                        "fault {} leaves no time for its convergence check",
                        f.name()
                    ));
                }
            }
            for w in &self.workload {
                let workload::Spec::KnowledgeWrites { stop_s, .. } = w;
                if stop_s.is_some_and(|s| s > quiet_from) {
                    return invalid(format!(
                        "a workload stops after the settle time begins ({quiet_from:.1} s)"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_scenario_parses_and_validates() {
        for (name, _) in BUILT_IN {
            let s = Scenario::built_in(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.name, name);
            assert!(
                !s.workload.is_empty() || s.learning.is_some(),
                "{name} has no workload"
            );
        }
    }

    #[test]
    fn the_bound_is_two_intervals_plus_the_longest_one_way_latency() {
        let s = Scenario::from_toml(
            "name = \"t\"\nnodes = 4\nduration_s = 60\nsites = [\"eu-de\", \"au-syd\"]\n[network]\njitter_ms = 5\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.max_one_way_ms(), 125.0 + 5.0);
        assert_eq!(s.convergence_bound_ms(), 10_000.0 + 130.0);
        assert_eq!(s.site_of(), vec![3, 7, 3, 7]);
    }

    #[test]
    fn bad_scenarios_are_refused_with_a_reason() {
        let base = "name = \"t\"\nnodes = 4\nduration_s = 60\n";
        for (extra, expect) in [
            ("sites = [\"moon\"]\n", "unknown site"),
            ("[network]\nloss = 1.5\n", "[network]"),
            ("[gossip]\nd = 20\n", "[gossip]"),
            ("[[faults]]\nkind = \"heal\"\nat_s = 55\n", "settle"),
        ] {
            let err = Scenario::from_toml(&format!("{base}{extra}"), "t")
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{extra:?}: {err}");
        }
        assert!(matches!(
            Scenario::from_toml("nodes = \"x\"", "t"),
            Err(Error::Parse { .. })
        ));
        assert!(matches!(
            Scenario::load("no-such-scenario"),
            Err(Error::UnknownScenario(_))
        ));
    }
}
