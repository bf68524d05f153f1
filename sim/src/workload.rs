//! Workloads: what clients ask the nodes to do (`[[workload]]`).
//!
//! ```toml
//! [[workload]]
//! kind = "knowledge-writes"   # PUT a new key at a random live node
//! rate_per_s = 2.0            # Poisson arrivals, over the whole federation
//! value_bytes = 200           # size of the random text in each value
//! start_s = 5                 # default 5
//! stop_s = 280                # default: the scenario's end minus its settle time
//! target = { site = "eu-de" } # default: any live node
//! ```
//!
//! Each workload is a [`Spec`] turned into a [`Generator`] that tells the
//! engine when its next request is due and what it is; the engine feeds it to
//! a node as `Input::Api`. Later kinds (thread writes, telemetry, learning
//! rounds) add a variant here and reuse the same path.

use mc_core::ApiRequest;
use rand::RngExt;
use rand::rngs::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::faults::Target;
use crate::queue::{Micros, secs};
use crate::rng::unit;

/// One workload of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Spec {
    /// PUTs of fresh keys (`w/<n>`) into the knowledge base.
    KnowledgeWrites {
        /// Writes per second across the federation.
        rate_per_s: f64,
        /// Bytes of random text in each value.
        #[serde(default = "default_value_bytes")]
        value_bytes: usize,
        /// First possible write.
        #[serde(default = "default_start_s")]
        start_s: f64,
        /// No writes after this (default: end minus settle time).
        #[serde(default)]
        stop_s: Option<f64>,
        /// Which nodes receive writes (default: any live node).
        #[serde(default)]
        target: Option<Target>,
    },
}

fn default_value_bytes() -> usize {
    200
}

fn default_start_s() -> f64 {
    5.0
}

impl Spec {
    /// Checks the spec against a scenario of `nodes` nodes.
    pub fn validate(&self, nodes: usize) -> Result<(), Error> {
        match self {
            Spec::KnowledgeWrites {
                rate_per_s,
                value_bytes,
                target,
                ..
            } => {
                if !rate_per_s.is_finite() || *rate_per_s <= 0.0 {
                    return Err(Error::Invalid(
                        "knowledge-writes: rate_per_s must be > 0".into(),
                    ));
                }
                if *value_bytes > 8 * 1024 * 1024 {
                    return Err(Error::Invalid(
                        "knowledge-writes: value_bytes above 8 MiB".into(),
                    ));
                }
                if let Some(n) = target.iter().flat_map(|t| &t.nodes).find(|n| **n >= nodes) {
                    return Err(Error::Invalid(format!(
                        "knowledge-writes: node {n} does not exist"
                    )));
                }
                Ok(())
            }
        }
    }
}

/// A running workload.
#[derive(Debug)]
pub struct Generator {
    spec: Spec,
    rng: ChaCha8Rng,
    start: Micros,
    stop: Micros,
}

impl Generator {
    /// A generator for `spec`; `default_stop` applies when it names no end.
    pub fn new(spec: Spec, rng: ChaCha8Rng, default_stop: Micros) -> Self {
        let (start, stop) = match &spec {
            Spec::KnowledgeWrites {
                start_s, stop_s, ..
            } => (secs(*start_s), stop_s.map_or(default_stop, secs)),
        };
        Self {
            spec,
            rng,
            start,
            stop,
        }
    }

    /// The spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Which nodes may receive its requests (`None`: any live node).
    pub fn target(&self) -> Option<&Target> {
        match &self.spec {
            Spec::KnowledgeWrites { target, .. } => target.as_ref(),
        }
    }

    /// When the request after one at `now` is due (the first: pass `None`),
    /// or `None` once past the stop time.
    pub fn next_after(&mut self, now: Option<Micros>) -> Option<Micros> {
        let rate = match &self.spec {
            Spec::KnowledgeWrites { rate_per_s, .. } => *rate_per_s,
        };
        // Exponential gaps: a Poisson process of `rate` per second.
        let gap = -(1.0 - unit(&mut self.rng)).ln() / rate;
        let at = now.unwrap_or(self.start) + secs(gap);
        (at <= self.stop).then_some(at)
    }

    /// Keeps only the `candidates` (sorted) this workload may write to, given
    /// each node's site and liveness.
    pub fn eligible(&mut self, candidates: &mut Vec<usize>, site_of: &[usize], alive: &[bool]) {
        if let Some(target) = self.target().cloned() {
            let wanted = target.resolve(site_of, alive, &mut self.rng);
            candidates.retain(|n| wanted.binary_search(n).is_ok());
        }
    }

    /// Picks one of `candidates` (sorted) to send the request to.
    pub fn pick(&mut self, candidates: &[usize]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        Some(candidates[self.rng.random_range(0..candidates.len())])
    }

    /// The request for write number `n`, and the key it writes.
    pub fn request(&mut self, n: u64) -> (ApiRequest, String) {
        match &self.spec {
            Spec::KnowledgeWrites { value_bytes, .. } => {
                const ALPHABET: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ";
                let text: String = (0..*value_bytes)
                    .map(|_| char::from(ALPHABET[self.rng.random_range(0..ALPHABET.len())]))
                    .collect();
                let key = write_key(n);
                let value = serde_json::json!({ "n": n, "text": text });
                (
                    ApiRequest::Put {
                        key: key.clone(),
                        value: value.into(),
                    },
                    key,
                )
            }
        }
    }
}

/// The key of write number `n`.
pub fn write_key(n: u64) -> String {
    format!("w/{n:08}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Streams;

    fn writes(rate: f64) -> Spec {
        Spec::KnowledgeWrites {
            rate_per_s: rate,
            value_bytes: 16,
            start_s: 1.0,
            stop_s: Some(101.0),
            target: None,
        }
    }

    #[test]
    fn arrivals_follow_the_rate_and_the_window() {
        let mut g = Generator::new(writes(5.0), Streams::new(2).stream("w"), secs(1e9));
        let mut at = g.next_after(None);
        let mut count = 0;
        while let Some(t) = at {
            assert!((secs(1.0)..=secs(101.0)).contains(&t));
            count += 1;
            at = g.next_after(Some(t));
        }
        assert!(
            (420..580).contains(&count),
            "{count} writes in 100 s at 5/s"
        );
    }

    #[test]
    fn requests_write_fresh_keys_of_the_asked_size() {
        let mut g = Generator::new(writes(1.0), Streams::new(2).stream("w"), 0);
        let (request, key) = g.request(42);
        assert_eq!(key, "w/00000042");
        let ApiRequest::Put { key: k, value } = request else {
            panic!("not a put");
        };
        assert_eq!(k, key);
        assert_eq!(value.to_value()["text"].as_str().unwrap().len(), 16);
        assert_eq!(g.pick(&[]), None);
        assert_eq!(g.pick(&[7]), Some(7));
    }
}
