//! A whole round as three nodes see it: sign, encode, chunk, deliver in
//! different interleavings, reassemble, decode, collect, share evidence,
//! aggregate. The nodes must end with the same accepted digest and
//! byte-identical models, with one participant late and one equivocating.

use ed25519_dalek::SigningKey;
use mc_learn_core::aggregate::Rule;
use mc_learn_core::chunk::{self, Chunk, Limits, Reassembler};
use mc_learn_core::round::{Collector, Config, NormBound, Rejection};
use mc_learn_core::update::{self, SignedUpdate};
use mc_learn_core::{CampaignId, model_hash};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng, seq::SliceRandom};

const PARTICIPANTS: usize = 8;
const DIM: usize = 3_000;
const MAX_CHUNK: usize = 4 * 1024;
const NODES: usize = 3;
const LATE: usize = 7;
const EQUIVOCATOR: usize = 6;

fn update_of(
    key: &SigningKey,
    campaign: CampaignId,
    base: &[f32],
    rng: &mut ChaCha8Rng,
) -> SignedUpdate {
    let weights = base
        .iter()
        .map(|b| b + rng.random_range(-0.05f32..0.05))
        .collect();
    update::sign(
        key,
        campaign,
        1,
        model_hash(base),
        rng.random_range(10..500),
        weights,
    )
    .unwrap()
}

#[test]
fn nodes_that_accept_the_same_set_hold_identical_models() {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let campaign = CampaignId::from_name("exchange-test");
    let keys: Vec<SigningKey> = (0..PARTICIPANTS)
        .map(|_| SigningKey::generate(&mut rng))
        .collect();
    let base: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let config = Config {
        campaign,
        round: 1,
        base_hash: model_hash(&base),
        num_params: DIM as u32,
        participants: keys.iter().map(|k| k.verifying_key().to_bytes()).collect(),
        norm_bound: NormBound::Delta {
            base: base.clone().into(),
            max: 10.0,
        },
    };

    // What each node receives: (sender index, chunk).
    let mut inbox: Vec<Vec<(usize, Chunk)>> = vec![Vec::new(); NODES];
    for (i, key) in keys.iter().enumerate() {
        if i == LATE {
            continue;
        }
        let honest = update_of(key, campaign, &base, &mut rng);
        let chunks = chunk::split(&honest.encode(), MAX_CHUNK).unwrap();
        assert!(chunks.len() > 1, "the test should exercise chunking");
        for node in 0..NODES {
            if i == EQUIVOCATOR && node == 2 {
                // The equivocator shows node 2 another update, which node 2
                // also relays to node 1.
                let other = update_of(key, campaign, &base, &mut rng);
                let chunks = chunk::split(&other.encode(), MAX_CHUNK).unwrap();
                for c in chunks {
                    inbox[2].push((i, c.clone()));
                    inbox[1].push((100 + i, c));
                }
                continue;
            }
            inbox[node].extend(chunks.iter().cloned().map(|c| (i, c)));
        }
    }

    let mut collectors: Vec<Collector> = Vec::new();
    let mut evidence = Vec::new();
    for mut chunks in inbox {
        chunks.shuffle(&mut rng);
        let mut reassembler = Reassembler::new(Limits::default());
        let mut collector = Collector::new(config.clone()).unwrap();
        for (from, c) in chunks {
            let Some(bytes) = reassembler.insert(from, c).unwrap() else {
                continue;
            };
            let update = SignedUpdate::decode(&bytes, 1 << 20).unwrap();
            match collector.offer(update) {
                Ok(_) => {}
                Err(Rejection::Equivocation) => {}
                Err(other) => panic!("unexpected rejection {other}"),
            }
        }
        assert_eq!(reassembler.pending_updates(), 0);
        // The late participant has not spoken: the round closes without it.
        assert!(!collector.is_complete());
        assert_eq!(
            collector.missing(),
            vec![keys[LATE].verifying_key().to_bytes()]
        );
        evidence.extend(collector.evidence().copied());
        collectors.push(collector);
    }
    assert_eq!(evidence.len(), 1, "only node 1 saw both updates");

    // Before the evidence spreads the three nodes accepted three different
    // sets (node 0 the first update, node 2 the second, node 1 neither), and
    // their digests show it.
    let before: Vec<_> = collectors.iter().map(Collector::accepted_digest).collect();
    assert!(before[0] != before[1] && before[1] != before[2] && before[0] != before[2]);
    for c in &mut collectors {
        c.offer_evidence(evidence[0]).unwrap();
    }
    let digest = collectors[0].accepted_digest();
    assert!(collectors.iter().all(|c| c.accepted_digest() == digest));
    assert_eq!(collectors[0].accepted().count(), PARTICIPANTS - 2);

    for rule in [
        Rule::FedAvg,
        Rule::Median,
        Rule::TrimmedMean { trim: 0.2 },
        Rule::MultiKrum { f: 1, m: 3 },
    ] {
        let outcomes: Vec<_> = collectors
            .iter()
            .map(|c| c.aggregate(rule).unwrap())
            .collect();
        for o in &outcomes[1..] {
            assert_eq!(o.model_hash, outcomes[0].model_hash, "{rule}");
            assert_eq!(o.accepted_digest, digest);
        }
        let bits: Vec<u32> = outcomes[0].model.iter().map(|w| w.to_bits()).collect();
        let again: Vec<u32> = outcomes[2].model.iter().map(|w| w.to_bits()).collect();
        assert_eq!(bits, again);
    }
}
