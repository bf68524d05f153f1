//! Every random choice of a run comes from the run's seed.
//!
//! One seed gives one [`Streams`]; each purpose (topology, network, gossip,
//! workload, faults, node seeds, disk) draws from its own ChaCha8 stream whose
//! key is the seed and the purpose's name. So adding a random draw to one
//! component does not shift the numbers every other component sees, and two
//! runs with the same seed make the same choices in the same order.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

/// The root of a run's randomness.
#[derive(Debug, Clone, Copy)]
pub struct Streams {
    seed: u64,
}

impl Streams {
    /// Streams for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The generator for one purpose (e.g. `"network"`).
    pub fn stream(&self, purpose: &str) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&fnv1a(purpose.as_bytes()).to_le_bytes());
        key[16..].copy_from_slice(b"mc-sim/streams/1");
        ChaCha8Rng::from_seed(key)
    }
}

/// FNV-1a, a fixed (not per-process) string hash.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A uniform draw in `[0, 1)`.
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    rng.random::<f64>()
}

/// Whether an event of probability `p` happens (false for `p <= 0`).
pub fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || unit(rng) < p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn a_stream_is_a_function_of_seed_and_purpose() {
        let a = Streams::new(7).stream("network").next_u64();
        assert_eq!(a, Streams::new(7).stream("network").next_u64());
        assert_ne!(a, Streams::new(8).stream("network").next_u64());
        assert_ne!(a, Streams::new(7).stream("gossip").next_u64());
    }

    #[test]
    fn chance_respects_its_extremes() {
        let mut rng = Streams::new(1).stream("t");
        assert!((0..1000).all(|_| !chance(&mut rng, 0.0)));
        assert!((0..1000).all(|_| chance(&mut rng, 1.0)));
        let hits = (0..10_000).filter(|_| chance(&mut rng, 0.25)).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
    }
}
