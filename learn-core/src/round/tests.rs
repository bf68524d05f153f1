use std::collections::BTreeSet;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand::{SeedableRng, rngs::ChaCha8Rng, seq::SliceRandom};

use super::*;
use crate::aggregate::{AggregateError, Rule};
use crate::digest::model_hash;
use crate::update::{SignedUpdate, sign};

const DIM: usize = 6;

struct Fixture {
    keys: Vec<SigningKey>,
    base: Vec<f32>,
    campaign: CampaignId,
}

impl Fixture {
    fn new(n: usize) -> Self {
        Self {
            keys: (0..n as u64)
                .map(|s| SigningKey::generate(&mut ChaCha8Rng::seed_from_u64(s)))
                .collect(),
            base: vec![0.5; DIM],
            campaign: CampaignId::from_name("round-tests"),
        }
    }

    fn config(&self, norm_bound: NormBound) -> Config {
        Config {
            campaign: self.campaign,
            round: 4,
            base_hash: model_hash(&self.base),
            num_params: DIM as u32,
            participants: self
                .keys
                .iter()
                .map(|k| k.verifying_key().to_bytes())
                .collect(),
            norm_bound,
        }
    }

    fn collector(&self) -> Collector {
        Collector::new(self.config(NormBound::Weights(100.0))).unwrap()
    }

    /// Participant `i`'s update: the base moved by `step`.
    fn update(&self, i: usize, step: f32) -> SignedUpdate {
        let w = self.base.iter().map(|b| b + step).collect();
        sign(
            &self.keys[i],
            self.campaign,
            4,
            model_hash(&self.base),
            10 + i as u64,
            w,
        )
        .unwrap()
    }
}

#[test]
fn valid_updates_are_accepted_until_the_round_is_complete() {
    let f = Fixture::new(3);
    let mut c = f.collector();
    assert!(!c.is_complete());
    assert_eq!(c.missing().len(), 3);
    for i in 0..3 {
        let a = c.offer(f.update(i, 0.1)).unwrap();
        assert_eq!(a.accepted, i + 1);
        assert_eq!(a.complete, i == 2);
    }
    assert!(c.is_complete());
    assert!(c.missing().is_empty());
    let out = c.aggregate(Rule::FedAvg).unwrap();
    assert_eq!(out.accepted.len(), 3);
    assert_eq!(out.model_hash, model_hash(&out.model));
    assert_eq!(out.accepted_digest, c.accepted_digest());
    assert!(out.model.iter().all(|&w| (w - 0.6).abs() < 1e-6));
}

#[test]
fn each_kind_of_bad_update_is_refused_with_its_reason() {
    let f = Fixture::new(2);
    let outsider = Fixture {
        keys: vec![SigningKey::generate(&mut ChaCha8Rng::seed_from_u64(99))],
        ..Fixture::new(0)
    };
    let resign = |u: &SignedUpdate, edit: &dyn Fn(&mut crate::update::UpdateHeader)| {
        let mut h = u.header;
        edit(&mut h);
        let mut u = u.clone();
        u.header = h;
        u.signature = ed25519_dalek::Signer::sign(&f.keys[0], &h.signing_bytes()).to_bytes();
        u
    };
    let good = f.update(0, 0.1);
    let mut bad_sig = good.clone();
    bad_sig.signature[0] ^= 1;
    let mut tampered = good.clone();
    tampered.weights[0] += 1.0;
    let mut short = good.clone();
    short.weights.pop();
    let cases: Vec<(SignedUpdate, Rejection)> = vec![
        (outsider.update(0, 0.1), Rejection::NotParticipant),
        (
            resign(&good, &|h| h.campaign = CampaignId::from_name("x")),
            Rejection::WrongCampaign,
        ),
        (
            resign(&good, &|h| h.round = 5),
            Rejection::WrongRound {
                expected: 4,
                got: 5,
            },
        ),
        (
            resign(&good, &|h| h.base_hash = Digest([1; 32])),
            Rejection::WrongBase,
        ),
        (
            resign(&good, &|h| h.num_params = 7),
            Rejection::WrongShape {
                expected: 6,
                got: 7,
            },
        ),
        (
            short,
            Rejection::WrongShape {
                expected: 6,
                got: 5,
            },
        ),
        (bad_sig, Rejection::BadSignature),
        (tampered, Rejection::WeightsMismatch),
    ];
    for (update, why) in cases {
        let mut c = f.collector();
        assert_eq!(c.offer(update), Err(why));
        // Nothing that failed checks 1–2 counts as the author's statement.
        assert_eq!(c.missing().len(), 2);
        c.offer(good.clone()).unwrap();
    }
}

#[test]
fn non_finite_and_oversized_updates_are_refused_but_count_as_spoken() {
    let f = Fixture::new(2);
    let mut c = f.collector();
    let mut w = f.base.clone();
    w[3] = f32::NAN;
    let nan = sign(&f.keys[0], f.campaign, 4, model_hash(&f.base), 1, w).unwrap();
    assert_eq!(c.offer(nan.clone()), Err(Rejection::NonFinite));
    assert_eq!(c.offer(nan), Err(Rejection::Duplicate));
    // A second, different statement from the same author is equivocation.
    assert_eq!(c.offer(f.update(0, 0.1)), Err(Rejection::Equivocation));
    assert!(matches!(
        c.offer(f.update(1, 1000.0)),
        Err(Rejection::NormTooLarge { max: 100.0, .. })
    ));
    assert!(c.is_complete());
    assert_eq!(c.aggregate(Rule::Median), Err(AggregateError::NoUpdates));
}

#[test]
fn delta_bounds_measure_distance_from_the_base() {
    let f = Fixture::new(2);
    let base: Arc<[f32]> = f.base.clone().into();
    let bound = NormBound::Delta { base, max: 1.0 };
    let mut c = Collector::new(f.config(bound)).unwrap();
    // √6 · 0.4 ≈ 0.98 is within 1.0; √6 · 0.5 ≈ 1.22 is not.
    c.offer(f.update(0, 0.4)).unwrap();
    let Err(Rejection::NormTooLarge { norm, .. }) = c.offer(f.update(1, -0.5)) else {
        panic!("expected NormTooLarge");
    };
    assert!((norm - 6f64.sqrt() * 0.5).abs() < 1e-6);
}

#[test]
fn delta_bounds_tell_non_finite_from_huge() {
    let f = Fixture::new(3);
    let bound = NormBound::Delta {
        base: f.base.clone().into(),
        max: 1.0,
    };
    let mut c = Collector::new(f.config(bound)).unwrap();
    let with = |i: usize, x: f32| {
        let mut w = f.base.clone();
        w[2] = x;
        sign(&f.keys[i], f.campaign, 4, model_hash(&f.base), 1, w).unwrap()
    };
    assert_eq!(c.offer(with(0, f32::NAN)), Err(Rejection::NonFinite));
    assert_eq!(
        c.offer(with(1, f32::NEG_INFINITY)),
        Err(Rejection::NonFinite)
    );
    // Finite, but its square overflows f32: refused for size, not as non-finite.
    assert!(matches!(
        c.offer(with(2, 3.0e38)),
        Err(Rejection::NormTooLarge { .. })
    ));
}

#[test]
fn bad_configs_are_refused() {
    let f = Fixture::new(1);
    let delta = |base: Vec<f32>| NormBound::Delta {
        base: base.into(),
        max: 1.0,
    };
    assert_eq!(
        Collector::new(f.config(delta(vec![0.5; 5]))).err(),
        Some(ConfigError::BaseShape {
            expected: 6,
            actual: 5
        })
    );
    assert_eq!(
        Collector::new(f.config(delta(vec![0.6; 6]))).err(),
        Some(ConfigError::BaseHash)
    );
    assert!(matches!(
        Collector::new(f.config(NormBound::Weights(f64::NAN))),
        Err(ConfigError::BadBound(_))
    ));
}

#[test]
fn equivocation_is_kept_as_evidence_and_excludes_the_author() {
    let f = Fixture::new(3);
    let mut a = f.collector();
    let first = f.update(0, 0.1);
    let second = f.update(0, 0.2);
    a.offer(first.clone()).unwrap();
    a.offer(f.update(1, 0.1)).unwrap();
    assert_eq!(a.offer(first.clone()), Err(Rejection::Duplicate));
    assert_eq!(a.offer(second.clone()), Err(Rejection::Equivocation));
    assert_eq!(a.offer(f.update(0, 0.3)), Err(Rejection::Excluded));
    assert_eq!(a.offer(first.clone()), Err(Rejection::Excluded));
    let evidence: Vec<Evidence> = a.evidence().copied().collect();
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].first, first.signed_header());
    assert_eq!(evidence[0].second, second.signed_header());
    evidence[0].verify(f.campaign, 4).unwrap();
    assert_eq!(a.accepted().count(), 1);

    // Node B saw only the first update; the evidence brings it in line.
    let mut b = f.collector();
    b.offer(f.update(1, 0.1)).unwrap();
    b.offer(first).unwrap();
    assert_ne!(a.accepted_digest(), b.accepted_digest());
    b.offer_evidence(evidence[0]).unwrap();
    assert_eq!(a.accepted_digest(), b.accepted_digest());
    let out = b.aggregate(Rule::FedAvg).unwrap();
    assert_eq!(out.excluded, vec![f.keys[0].verifying_key().to_bytes()]);
    assert_eq!(out.missing, vec![f.keys[2].verifying_key().to_bytes()]);
    assert_eq!(out.model, a.aggregate(Rule::FedAvg).unwrap().model);
}

#[test]
fn forged_evidence_is_refused() {
    let f = Fixture::new(2);
    let mut c = f.collector();
    let one = f.update(0, 0.1).signed_header();
    let two = f.update(0, 0.2).signed_header();
    let other = f.update(1, 0.2).signed_header();
    let same = Evidence {
        first: one,
        second: one,
    };
    assert_eq!(c.offer_evidence(same), Err(Rejection::NotEquivocation));
    let mixed = Evidence {
        first: one,
        second: other,
    };
    assert_eq!(c.offer_evidence(mixed), Err(Rejection::NotEquivocation));
    let mut forged = Evidence {
        first: one,
        second: two,
    };
    forged.second.signature[3] ^= 1;
    assert_eq!(c.offer_evidence(forged), Err(Rejection::BadSignature));
    let outsider = Fixture {
        keys: vec![SigningKey::generate(&mut ChaCha8Rng::seed_from_u64(7))],
        ..Fixture::new(0)
    };
    let stranger = Evidence {
        first: outsider.update(0, 0.1).signed_header(),
        second: outsider.update(0, 0.2).signed_header(),
    };
    assert_eq!(c.offer_evidence(stranger), Err(Rejection::NotParticipant));
    assert_eq!(c.evidence().count(), 0);
    c.offer_evidence(Evidence {
        first: one,
        second: two,
    })
    .unwrap();
    assert_eq!(c.offer(f.update(0, 0.1)), Err(Rejection::Excluded));
}

#[test]
fn arrival_order_does_not_change_the_model_or_the_digest() {
    let f = Fixture::new(9);
    let updates: Vec<SignedUpdate> = (0..9)
        .map(|i| f.update(i, 0.01 * i as f32 - 0.03))
        .collect();
    let mut reference: Option<(Digest, Vec<Outcome>)> = None;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..5 {
        let mut shuffled = updates.clone();
        shuffled.shuffle(&mut rng);
        let mut c = f.collector();
        for u in shuffled {
            c.offer(u).unwrap();
        }
        let outcomes: Vec<Outcome> = [Rule::FedAvg, Rule::Median, Rule::MultiKrum { f: 2, m: 4 }]
            .into_iter()
            .map(|r| c.aggregate(r).unwrap())
            .collect();
        let now = (c.accepted_digest(), outcomes);
        match &reference {
            None => reference = Some(now),
            Some(r) => assert_eq!(*r, now),
        }
    }
}

#[test]
fn parallel_offers_give_the_sequential_results() {
    let f = Fixture::new(5);
    let mut dup_bad = f.update(3, 0.1);
    dup_bad.signature[0] ^= 1;
    let batch = vec![
        f.update(0, 0.1),
        f.update(1, 0.1),
        f.update(0, 0.1),
        f.update(1, 0.2),
        dup_bad,
        f.update(2, 500.0),
        f.update(3, 0.1),
    ];
    let mut seq = f.collector();
    let one_by_one: Vec<_> = batch.iter().cloned().map(|u| seq.offer(u)).collect();
    let mut par = f.collector();
    assert_eq!(par.offer_all(batch), one_by_one);
    assert_eq!(par.accepted_digest(), seq.accepted_digest());
    assert_eq!(par.missing(), vec![f.keys[4].verifying_key().to_bytes()]);
    let keys: BTreeSet<_> = par.accepted().map(|u| u.author).collect();
    assert_eq!(keys.len(), 2);
}

#[test]
fn the_collector_and_the_free_function_agree_bit_for_bit() {
    let f = Fixture::new(7);
    let mut c = f.collector();
    let updates: Vec<SignedUpdate> = (0..7).map(|i| f.update(i, 0.013 * i as f32)).collect();
    for u in &updates {
        c.offer(u.clone()).unwrap();
    }
    let inputs: Vec<(u64, &[f32])> = updates
        .iter()
        .rev()
        .map(|u| (u.header.sample_count, u.weights.as_slice()))
        .collect();
    for rule in [
        Rule::FedAvg,
        Rule::TrimmedMean { trim: 0.3 },
        Rule::MultiKrum { f: 2, m: 3 },
    ] {
        let free = crate::aggregate::aggregate(rule, &inputs).unwrap();
        let outcome = c.aggregate(rule).unwrap();
        assert_eq!(model_hash(&free), outcome.model_hash, "{rule}");
        let shown = format!("{outcome:?}");
        assert!(shown.contains("[6 × f32]") && shown.len() < 400, "{shown}");
    }
    assert!(format!("{:?}", c.config()).contains("Weights(100.0)"));
}
