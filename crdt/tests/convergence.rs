//! Property tests: any interleaving of local writes, pairwise sync and out-of-order gossip
//! converges once every replica has synced with every other.

mod common;

use std::collections::HashMap;

use common::{actor, sync_pair};
use mc_crdt::{Entry, Json, KnowledgeBase, SyncSession};
use proptest::prelude::*;
use serde_json::Value;

/// A small key space, with shared prefixes and non-ASCII keys, so that writes collide.
const KEYS: [&str; 6] = ["a", "a/1", "a/2", "b", "é", "\u{10000}"];
/// Upper bound on steps per case (also the length of the shuffled delivery order).
const MAX_STEPS: usize = 48;

#[derive(Debug, Clone)]
enum Step {
    Put {
        replica: usize,
        key: usize,
        value: Value,
    },
    Delete {
        replica: usize,
        key: usize,
    },
    /// Run the sync protocol between two replicas (sessions persist across steps).
    Sync {
        a: usize,
        b: usize,
    },
    /// Deliver one gossiped change to a replica.
    Deliver {
        message: usize,
        to: usize,
    },
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        // Quarters round-trip exactly through JSON text.
        (-4_000_000_i32..4_000_000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
        "[a-z0-9 é\"\\\\]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn write_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..5_usize, 0..KEYS.len(), json_value())
            .prop_map(|(replica, key, value)| Step::Put { replica, key, value }),
        1 => (0..5_usize, 0..KEYS.len()).prop_map(|(replica, key)| Step::Delete { replica, key }),
    ]
}

fn sync_steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => write_step(),
        2 => (0..5_usize, 0..5_usize).prop_map(|(a, b)| Step::Sync { a, b }),
    ];
    prop::collection::vec(step, 0..MAX_STEPS)
}

fn gossip_steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        2 => write_step(),
        3 => (0..MAX_STEPS, 0..5_usize).prop_map(|(message, to)| Step::Deliver { message, to }),
    ];
    prop::collection::vec(step, 0..MAX_STEPS)
}

/// The replicas of one test case plus everything the checks need.
struct Mesh {
    replicas: Vec<KnowledgeBase>,
    /// Sync session of replica `.0` for peer `.1`.
    sessions: HashMap<(usize, usize), SyncSession>,
    /// Every entry ever written, by key: a listed entry must be exactly one of them.
    writes: HashMap<String, Vec<Entry>>,
    /// Gossip: the change bytes of every local write, in creation order.
    gossip: Vec<Vec<u8>>,
}

impl Mesh {
    fn new(n: usize) -> Self {
        Mesh {
            replicas: (0..n)
                .map(|i| KnowledgeBase::new(actor(i as u8 + 1)))
                .collect(),
            sessions: HashMap::new(),
            writes: HashMap::new(),
            gossip: Vec::new(),
        }
    }

    fn n(&self) -> usize {
        self.replicas.len()
    }

    fn run(&mut self, time: u64, step: &Step) {
        let n = self.n();
        match step {
            Step::Put {
                replica,
                key,
                value,
            } => {
                let r = replica % n;
                let value = Json::from(value.clone());
                let written = Entry {
                    key: KEYS[*key].to_owned(),
                    value: value.clone(),
                    author: format!("replica-{r}"),
                    updated_at_ms: time,
                };
                self.replicas[r]
                    .put(&written.key, &value, &written.author, time)
                    .unwrap();
                self.gossip
                    .push(self.replicas[r].last_local_change().unwrap());
                self.writes
                    .entry(written.key.clone())
                    .or_default()
                    .push(written);
            }
            Step::Delete { replica, key } => {
                let r = replica % n;
                if self.replicas[r].delete(KEYS[*key]).unwrap() {
                    self.gossip
                        .push(self.replicas[r].last_local_change().unwrap());
                }
            }
            Step::Sync { a, b } => self.sync(a % n, b % n),
            Step::Deliver { message, to } => {
                if !self.gossip.is_empty() {
                    let bytes = &self.gossip[message % self.gossip.len()];
                    self.replicas[to % n].apply_changes(bytes).unwrap();
                }
            }
        }
    }

    fn sync(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let mut a_to_b = self.sessions.remove(&(a, b)).unwrap_or_default();
        let mut b_to_a = self.sessions.remove(&(b, a)).unwrap_or_default();
        let (low, high) = self.replicas.split_at_mut(a.max(b));
        let (ra, rb) = if a < b {
            (&mut low[a], &mut high[0])
        } else {
            (&mut high[0], &mut low[b])
        };
        sync_pair(ra, &mut a_to_b, rb, &mut b_to_a);
        self.sessions.insert((a, b), a_to_b);
        self.sessions.insert((b, a), b_to_a);
    }

    /// Every pair syncs, twice over, so changes reach everyone whatever the pair order.
    fn full_sync(&mut self) {
        for _ in 0..2 {
            for a in 0..self.n() {
                for b in a + 1..self.n() {
                    self.sync(a, b);
                }
            }
        }
    }

    fn assert_converged(&mut self) -> Result<(), TestCaseError> {
        let heads = self.replicas[0].heads();
        let listing = self.replicas[0].list("").unwrap();
        for replica in &mut self.replicas[1..] {
            prop_assert_eq!(&replica.heads(), &heads);
            prop_assert_eq!(&replica.list("").unwrap(), &listing);
        }
        for entry in &listing {
            let candidates = self.writes.get(&entry.key).cloned().unwrap_or_default();
            prop_assert!(
                candidates.contains(entry),
                "{:?} is not one whole write",
                entry
            );
        }
        for prefix in ["a", "a/", "é", "\u{10000}", "c"] {
            let expected: Vec<Entry> = listing
                .iter()
                .filter(|e| e.key.starts_with(prefix))
                .cloned()
                .collect();
            prop_assert_eq!(self.replicas[0].list(prefix).unwrap(), expected);
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pairwise_sync_converges(n in 2..=5_usize, steps in sync_steps()) {
        let mut mesh = Mesh::new(n);
        for (time, step) in steps.iter().enumerate() {
            mesh.run(time as u64, step);
        }
        mesh.full_sync();
        mesh.assert_converged()?;
        // The protocol does not answer a message announcing heads the receiver already has,
        // so only the receiving side of the last message is guaranteed to know.
        let Mesh { replicas, sessions, .. } = &mut mesh;
        for a in 0..n {
            for b in a + 1..n {
                let a_knows = sessions[&(a, b)].in_sync_with(&mut replicas[a]);
                let b_knows = sessions[&(b, a)].in_sync_with(&mut replicas[b]);
                prop_assert!(a_knows || b_knows, "neither {} nor {} knows", a, b);
            }
        }
    }

    #[test]
    fn shuffled_gossip_then_sync_converges(
        n in 2..=5_usize,
        steps in gossip_steps(),
        order in Just((0..MAX_STEPS).collect::<Vec<_>>()).prop_shuffle(),
        deliver_everything in any::<bool>(),
    ) {
        let mut mesh = Mesh::new(n);
        for (time, step) in steps.iter().enumerate() {
            mesh.run(time as u64, step);
        }
        if deliver_everything {
            // Every replica gets every change, each in its own shuffled order: gossip alone
            // must converge, queued changes being applied once their dependencies arrive.
            for r in 0..n {
                for &i in order.iter().cycle().skip(r * 7).take(order.len()) {
                    if let Some(bytes) = mesh.gossip.get(i) {
                        mesh.replicas[r].apply_changes(bytes).unwrap();
                    }
                }
            }
            mesh.assert_converged()?;
        }
        mesh.full_sync();
        mesh.assert_converged()?;
    }
}
