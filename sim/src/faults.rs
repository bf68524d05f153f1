//! Faults on a timeline (`[[faults]]` in a scenario).
//!
//! ```toml
//! [[faults]]
//! kind = "partition"            # split the sites into groups
//! at_s = 60
//! groups = [["us-south", "ca-tor", "us-east", "br-sao"], ["eu-de", "eu-gb", "eu-es"]]
//!
//! [[faults]]
//! kind = "heal"                 # every partition and isolation ends
//! at_s = 120
//!
//! [[faults]]
//! kind = "crash"                # a crash loses unflushed writes
//! at_s = 60
//! target = { site = "eu-de" }   # or { nodes = [3, 4] } or { random = 5 }
//! restart_after_s = 45          # omit: the nodes stay down
//! ```
//!
//! Other kinds: `isolate` (one site cut off from every other), `pause` (a
//! slow node that processes nothing for `duration_s`), `clock-skew` (a node's
//! clock steps by `skew_ms`), `duplicate` and `reorder` (gossip frames, and
//! point-to-point messages with `direct = true`, for `duration_s`), `loss`
//! (extra gossip loss for `duration_s`), and two test hooks that break a node
//! on purpose to prove the checkers fire: `drop-sync` (the network silently
//! drops every sync message the target nodes send) and `unsafe-acks` (their
//! driver acknowledges writes before the store has flushed them).

use rand::rngs::ChaCha8Rng;
use rand::seq::index;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::regions;

/// Which nodes a fault hits. Exactly one field should be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Target {
    /// These node numbers.
    pub nodes: Vec<usize>,
    /// Every node at this site.
    pub site: Option<String>,
    /// This many nodes, drawn at random (from live nodes) when the fault fires.
    pub random: Option<usize>,
}

impl Target {
    /// The node numbers, given each node's site and which nodes are alive.
    pub fn resolve(&self, site_of: &[usize], alive: &[bool], rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut out: Vec<usize> = self.nodes.clone();
        if let Some(site) = self.site.as_deref().and_then(regions::site_index) {
            out.extend((0..site_of.len()).filter(|n| site_of[*n] == site));
        }
        if let Some(count) = self.random {
            let live: Vec<usize> = (0..alive.len()).filter(|n| alive[*n]).collect();
            out.extend(
                index::sample(rng, live.len(), count.min(live.len()))
                    .iter()
                    .map(|i| live[i]),
            );
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn validate(&self, nodes: usize) -> Result<(), String> {
        let set = usize::from(!self.nodes.is_empty())
            + usize::from(self.site.is_some())
            + usize::from(self.random.is_some());
        if set != 1 {
            return Err("a target needs exactly one of nodes, site, random".into());
        }
        if let Some(n) = self.nodes.iter().find(|n| **n >= nodes) {
            return Err(format!(
                "node {n} does not exist (the scenario has {nodes})"
            ));
        }
        if let Some(site) = &self.site {
            check_site(site)?;
        }
        Ok(())
    }
}

/// One fault and when it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Split the sites into groups that cannot reach each other. Sites not
    /// listed form one more group.
    Partition {
        /// When, in seconds from the start.
        at_s: f64,
        /// Site names per group.
        groups: Vec<Vec<String>>,
    },
    /// Cut one site off from every other.
    Isolate {
        /// When.
        at_s: f64,
        /// The site.
        site: String,
    },
    /// End every partition and isolation; links reconnect.
    Heal {
        /// When.
        at_s: f64,
    },
    /// Kill nodes: unflushed writes, timers, queued replies are lost.
    Crash {
        /// When.
        at_s: f64,
        /// Which nodes.
        target: Target,
        /// Restart this long after the crash; never if absent.
        restart_after_s: Option<f64>,
    },
    /// Stop nodes from processing anything for a while (a slow node).
    Pause {
        /// When.
        at_s: f64,
        /// Which nodes.
        target: Target,
        /// How long.
        duration_s: f64,
    },
    /// Step nodes' clocks by `skew_ms` (negative: backwards).
    ClockSkew {
        /// When.
        at_s: f64,
        /// Which nodes.
        target: Target,
        /// The step.
        skew_ms: i64,
    },
    /// Deliver some frames twice.
    Duplicate {
        /// When.
        at_s: f64,
        /// For how long.
        duration_s: f64,
        /// Chance per frame.
        probability: f64,
        /// Also point-to-point messages.
        #[serde(default)]
        direct: bool,
    },
    /// Hold some frames back so later ones overtake them.
    Reorder {
        /// When.
        at_s: f64,
        /// For how long.
        duration_s: f64,
        /// Chance per frame.
        probability: f64,
        /// Longest hold-back.
        max_delay_ms: f64,
        /// Also point-to-point messages.
        #[serde(default)]
        direct: bool,
    },
    /// Extra loss of gossip frames.
    Loss {
        /// When.
        at_s: f64,
        /// For how long.
        duration_s: f64,
        /// Added loss probability.
        probability: f64,
    },
    /// Test hook: the network drops every sync message these nodes send.
    DropSync {
        /// When.
        at_s: f64,
        /// Which nodes.
        target: Target,
    },
    /// Test hook: these nodes' driver acknowledges writes before the store
    /// has flushed them — the bug the durability rule exists to prevent.
    UnsafeAcks {
        /// When.
        at_s: f64,
        /// Which nodes.
        target: Target,
    },
}

impl Fault {
    /// When the fault starts.
    pub fn at_s(&self) -> f64 {
        match self {
            Fault::Partition { at_s, .. }
            | Fault::Isolate { at_s, .. }
            | Fault::Heal { at_s }
            | Fault::Crash { at_s, .. }
            | Fault::Pause { at_s, .. }
            | Fault::ClockSkew { at_s, .. }
            | Fault::Duplicate { at_s, .. }
            | Fault::Reorder { at_s, .. }
            | Fault::Loss { at_s, .. }
            | Fault::DropSync { at_s, .. }
            | Fault::UnsafeAcks { at_s, .. } => *at_s,
        }
    }

    /// When the fault's effects end (a restart, the end of a pause or of a
    /// window), if it ends on its own.
    pub fn ends_at_s(&self) -> Option<f64> {
        match self {
            Fault::Crash {
                at_s,
                restart_after_s,
                ..
            } => restart_after_s.map(|r| at_s + r),
            Fault::Pause {
                at_s, duration_s, ..
            }
            | Fault::Duplicate {
                at_s, duration_s, ..
            }
            | Fault::Reorder {
                at_s, duration_s, ..
            }
            | Fault::Loss {
                at_s, duration_s, ..
            } => Some(at_s + duration_s),
            _ => None,
        }
    }

    /// A short name for traces and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::Isolate { .. } => "isolate",
            Fault::Heal { .. } => "heal",
            Fault::Crash { .. } => "crash",
            Fault::Pause { .. } => "pause",
            Fault::ClockSkew { .. } => "clock-skew",
            Fault::Duplicate { .. } => "duplicate",
            Fault::Reorder { .. } => "reorder",
            Fault::Loss { .. } => "loss",
            Fault::DropSync { .. } => "drop-sync",
            Fault::UnsafeAcks { .. } => "unsafe-acks",
        }
    }

    /// Checks the fault against a scenario of `nodes` nodes.
    pub fn validate(&self, nodes: usize) -> Result<(), Error> {
        let invalid = |why: String| {
            Error::Invalid(format!("fault {} at {} s: {why}", self.name(), self.at_s()))
        };
        if self.at_s().is_nan() || self.at_s() < 0.0 {
            return Err(invalid("at_s must be ≥ 0".into()));
        }
        let result = match self {
            Fault::Partition { groups, .. } => {
                groups.iter().flatten().try_for_each(|s| check_site(s))
            }
            Fault::Isolate { site, .. } => check_site(site),
            Fault::Crash {
                target,
                restart_after_s,
                ..
            } => target.validate(nodes).and_then(|()| match restart_after_s {
                Some(r) if r.is_nan() || *r < 1.0 => Err("restart_after_s must be ≥ 1".into()),
                _ => Ok(()),
            }),
            Fault::Pause {
                target, duration_s, ..
            } => target.validate(nodes).and_then(|()| positive(*duration_s)),
            Fault::ClockSkew { target, .. }
            | Fault::DropSync { target, .. }
            | Fault::UnsafeAcks { target, .. } => target.validate(nodes),
            Fault::Duplicate {
                duration_s,
                probability,
                ..
            }
            | Fault::Loss {
                duration_s,
                probability,
                ..
            } => positive(*duration_s).and_then(|()| probability_ok(*probability)),
            Fault::Reorder {
                duration_s,
                probability,
                max_delay_ms,
                ..
            } => positive(*duration_s)
                .and_then(|()| probability_ok(*probability))
                .and_then(|()| positive(*max_delay_ms)),
            Fault::Heal { .. } => Ok(()),
        };
        result.map_err(invalid)
    }
}

fn check_site(site: &str) -> Result<(), String> {
    match regions::site_index(site) {
        Some(_) => Ok(()),
        None => Err(format!(
            "unknown site {site:?} (sites: {})",
            regions::site_names().join(", ")
        )),
    }
}

fn positive(x: f64) -> Result<(), String> {
    if x > 0.0 {
        Ok(())
    } else {
        Err(format!("{x} must be > 0"))
    }
}

fn probability_ok(p: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("probability {p} is not in [0, 1]"))
    }
}

/// The group each site belongs to under a partition: listed groups get
/// 1, 2, …; unlisted sites share group 0.
pub fn site_groups(groups: &[Vec<String>]) -> Vec<u32> {
    let mut out = vec![0; regions::SITES.len()];
    for (g, sites) in groups.iter().enumerate() {
        for site in sites {
            if let Some(i) = regions::site_index(site) {
                out[i] = g as u32 + 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Streams;

    #[test]
    fn targets_resolve_to_sorted_nodes() {
        let sites = vec![0, 3, 3, 5, 3];
        let alive = vec![true, true, false, true, true];
        let mut rng = Streams::new(1).stream("faults");
        let by_site = Target {
            site: Some("eu-de".into()),
            ..Target::default()
        };
        assert_eq!(by_site.resolve(&sites, &alive, &mut rng), vec![1, 2, 4]);
        let random = Target {
            random: Some(10),
            ..Target::default()
        };
        assert_eq!(random.resolve(&sites, &alive, &mut rng), vec![0, 1, 3, 4]);
    }

    #[test]
    fn faults_parse_from_toml_and_validate() {
        #[derive(Deserialize)]
        struct F {
            faults: Vec<Fault>,
        }
        let f: F = toml::from_str(
            r#"
            [[faults]]
            kind = "crash"
            at_s = 10
            target = { site = "eu-de" }
            restart_after_s = 5
            [[faults]]
            kind = "reorder"
            at_s = 1
            duration_s = 2
            probability = 0.5
            max_delay_ms = 30
            "#,
        )
        .unwrap();
        assert_eq!(f.faults[0].ends_at_s(), Some(15.0));
        assert!(f.faults.iter().all(|x| x.validate(10).is_ok()));
        let bad = Fault::Crash {
            at_s: 1.0,
            target: Target {
                nodes: vec![12],
                ..Target::default()
            },
            restart_after_s: None,
        };
        assert!(bad.validate(10).is_err());
        let bad = Fault::Isolate {
            at_s: 1.0,
            site: "moon".into(),
        };
        assert!(bad.validate(10).is_err());
        assert!(toml::from_str::<F>("[[faults]]\nkind = \"heal\"\nat_s = 1\nbogus = 2").is_err());
    }

    #[test]
    fn unlisted_sites_share_a_group() {
        let g = site_groups(&[vec!["eu-de".into(), "eu-gb".into()]]);
        assert_eq!(g[regions::site_index("eu-de").unwrap()], 1);
        assert_eq!(g[regions::site_index("eu-gb").unwrap()], 1);
        assert_eq!(g[regions::site_index("us-east").unwrap()], 0);
    }
}
