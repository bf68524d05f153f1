//! The acceptance benchmark: verify and aggregate 100 signed updates of
//! 1,000,000 parameters.
//!
//! Run with `cargo bench -p mc-learn-core --bench aggregate`. Groups:
//!
//! - `round_100x1M/verify`: `Collector::offer_all` on 100 updates (strict
//!   ed25519 verification, BLAKE3 of 4 MB each, shape, finiteness and a norm
//!   bound on the delta from the base), in parallel over updates.
//! - `round_100x1M/aggregate/<rule>`: `Collector::aggregate` over the
//!   accepted set.
//! - `round_100x1M/verify+aggregate/<rule>`: both, the figure the issue's
//!   "< 1 s on 2 cores" is about.
//! - `hash_4MB`: why BLAKE3 and not SHA-256 for `model_hash`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use mc_learn_core::aggregate::Rule;
use mc_learn_core::round::{Collector, Config, NormBound};
use mc_learn_core::update::{self, SignedUpdate};
use mc_learn_core::{CampaignId, model_hash};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};
use sha2::Digest as _;

const UPDATES: usize = 100;
const PARAMS: usize = 1_000_000;

struct Round {
    config: Config,
    updates: Vec<SignedUpdate>,
}

/// 100 participants, each sending the base model plus small noise,
/// from a fixed seed.
fn round() -> Round {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let campaign = CampaignId::from_name("bench");
    let base: Vec<f32> = (0..PARAMS)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let base_hash = model_hash(&base);
    let keys: Vec<SigningKey> = (0..UPDATES)
        .map(|_| SigningKey::generate(&mut rng))
        .collect();
    let updates: Vec<SignedUpdate> = keys
        .iter()
        .map(|key| {
            let w = base
                .iter()
                .map(|b| b + rng.random_range(-0.01f32..0.01))
                .collect();
            update::sign(
                key,
                campaign,
                1,
                base_hash,
                rng.random_range(100..10_000),
                w,
            )
            .unwrap()
        })
        .collect();
    let config = Config {
        campaign,
        round: 1,
        base_hash,
        num_params: PARAMS as u32,
        participants: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
        norm_bound: NormBound::Delta {
            base: base.into(),
            max: 100.0,
        },
    };
    Round { config, updates }
}

const RULES: [Rule; 4] = [
    Rule::FedAvg,
    Rule::Median,
    Rule::TrimmedMean { trim: 0.2 },
    Rule::MultiKrum { f: 20, m: 60 },
];

fn verify(round: &Round, updates: Vec<SignedUpdate>) -> Collector {
    let mut collector = Collector::new(round.config.clone()).unwrap();
    let results = collector.offer_all(updates);
    assert!(results.iter().all(Result::is_ok));
    collector
}

fn bench_round(c: &mut Criterion) {
    let round = round();
    let mut group = c.benchmark_group("round_100x1M");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));

    group.bench_function("verify", |b| {
        b.iter_batched(
            || round.updates.clone(),
            |updates| verify(&round, updates),
            BatchSize::PerIteration,
        )
    });

    let collector = verify(&round, round.updates.clone());
    for rule in RULES {
        group.bench_function(format!("aggregate/{rule}"), |b| {
            b.iter(|| black_box(collector.aggregate(rule).unwrap()))
        });
    }
    drop(collector);

    for rule in RULES {
        group.bench_function(format!("verify+aggregate/{rule}"), |b| {
            b.iter_batched(
                || round.updates.clone(),
                |updates| verify(&round, updates).aggregate(rule).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn bench_hash(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let weights: Vec<f32> = (0..PARAMS).map(|_| rng.random::<f32>()).collect();
    let mut group = c.benchmark_group("hash_4MB");
    group.sample_size(20);
    group.bench_function("blake3_model_hash", |b| {
        b.iter(|| model_hash(black_box(&weights)))
    });
    group.bench_function("sha256", |b| {
        b.iter(|| {
            let mut h = sha2::Sha256::new();
            for w in black_box(&weights).chunks(16 * 1024) {
                let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
                h.update(&bytes);
            }
            h.finalize()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_round, bench_hash);
criterion_main!(benches);
