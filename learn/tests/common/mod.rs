//! Synthetic tables for the behaviour tests, made here so the tests depend
//! on nothing but this crate.

#![allow(dead_code)] // Each test binary uses a different subset.

use mc_learn::{Dataset, ModelSchema, Task, TrainConfig, tch::Device};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

pub fn schema(task: Task, hidden_layers: Vec<u32>) -> ModelSchema {
    ModelSchema {
        name: "synthetic".into(),
        task,
        features: vec!["a".into(), "b".into()],
        target: "y".into(),
        hidden_layers,
        target_scale: Default::default(),
        log_features: Vec::new(),
    }
}

/// `rows` rows with features uniform in [-2, 2] and the target `f(a, b)`.
pub fn table(rows: usize, seed: u64, f: impl Fn(f32, f32) -> f32) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut d = Dataset::empty(vec!["a".into(), "b".into()], "y".into());
    for _ in 0..rows {
        let a: f32 = rng.random_range(-2.0..2.0);
        let b: f32 = rng.random_range(-2.0..2.0);
        d.push(&[a, b], f(a, b));
    }
    d
}

/// A smooth nonlinear function of both features.
pub fn wave(a: f32, b: f32) -> f32 {
    2.0 * a.sin() + 0.5 * b * b + 0.3 * a * b
}

/// 1 inside the circle of radius 1.3, else 0: separable, not linearly.
pub fn disc(a: f32, b: f32) -> f32 {
    if a * a + b * b < 1.69 { 1.0 } else { 0.0 }
}

/// Small, quick settings on the CPU (bit-reproducible).
pub fn quick(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        learning_rate: 1e-2,
        weight_decay: 0.0,
        seed: 7,
        device: Device::Cpu,
    }
}
