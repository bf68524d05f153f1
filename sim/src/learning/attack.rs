//! What Byzantine participants do to their updates.
//!
//! - [`corrupt`]: before the core signs — the driver of a sign-flip, scale,
//!   noise or NaN participant hands its core bad weights, which it then signs
//!   and sends like any update.
//! - [`sabotage`]: after the core signs — the simulator rewrites a forged,
//!   tampered or impostor participant's outgoing update chunk so that no
//!   receiver can accept it.

use mc_core::learning::{MAX_UPDATE_BYTES, UPDATE_CHUNK_BYTES};
use mc_learn_core::chunk::{self, CHUNK_OVERHEAD, Chunk};
use mc_learn_core::ed25519_dalek::{Signer, SigningKey};
use mc_learn_core::{SignedUpdate, update};
use mc_protocols::{LearnMessage, MAX_MESSAGE_BYTES, Message};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;

use super::{Attack, Behaviour};
use crate::rng::unit;

/// Changes `weights` (trained from `base`; empty for the moments round, which
/// counts as a base of zeros) as `behaviour` does. Honest and wire
/// behaviours leave them alone.
pub fn corrupt(
    behaviour: Behaviour,
    attack: &Attack,
    base: &[f32],
    weights: &mut [f32],
    rng: &mut ChaCha8Rng,
) {
    let base_of = |i: usize| base.get(i).copied().unwrap_or(0.0);
    match behaviour {
        Behaviour::SignFlip => {
            for (i, w) in weights.iter_mut().enumerate() {
                *w = base_of(i) - attack.flip_factor * (*w - base_of(i));
            }
        }
        Behaviour::Scale => {
            for (i, w) in weights.iter_mut().enumerate() {
                *w = base_of(i) + attack.scale_factor * (*w - base_of(i));
            }
        }
        Behaviour::Noise => {
            for w in weights.iter_mut() {
                *w += attack.noise_std * normal(rng) as f32;
            }
        }
        Behaviour::Nan => {
            if !weights.is_empty() {
                let i = rng.random_range(0..weights.len());
                weights[i] = f32::NAN;
            }
        }
        Behaviour::Honest | Behaviour::Forged | Behaviour::Tampered | Behaviour::Impostor => {}
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - unit(rng); // (0, 1]: ln is finite
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The envelope `bytes` a wire saboteur sends, rewritten if it carries a
/// whole update: `Forged` replaces the signature by `outsider`'s over the
/// same header, `Tampered` negates the signed weights, `Impostor` re-signs
/// the update as `outsider`. `None` for any other message (sent as it is).
pub fn sabotage(behaviour: Behaviour, bytes: &[u8], outsider: &SigningKey) -> Option<Vec<u8>> {
    let Ok(Message::Learn(LearnMessage::UpdateChunk {
        campaign,
        round,
        chunk,
    })) = mc_protocols::decode(bytes, MAX_MESSAGE_BYTES)
    else {
        return None;
    };
    let piece = Chunk::decode(&chunk, UPDATE_CHUNK_BYTES + CHUNK_OVERHEAD).ok()?;
    // Scenario validation keeps updates to one chunk.
    if piece.total != 1 {
        return None;
    }
    let mut u = SignedUpdate::decode(&piece.data, MAX_UPDATE_BYTES).ok()?;
    match behaviour {
        Behaviour::Forged => u.signature = outsider.sign(&u.header.signing_bytes()).to_bytes(),
        Behaviour::Tampered => u.weights.iter_mut().for_each(|w| *w = -*w),
        Behaviour::Impostor => {
            let h = u.header;
            u = update::sign(
                outsider,
                h.campaign,
                h.round,
                h.base_hash,
                h.sample_count,
                u.weights,
            )
            .ok()?;
        }
        _ => return None,
    }
    let pieces = chunk::split(&u.encode(), UPDATE_CHUNK_BYTES).ok()?;
    let [piece] = pieces.as_slice() else {
        return None;
    };
    let message = Message::Learn(LearnMessage::UpdateChunk {
        campaign,
        round,
        chunk: piece.encode(),
    });
    mc_protocols::encode(&message, MAX_MESSAGE_BYTES).ok()
}

#[cfg(test)]
mod tests {
    use mc_learn_core::round::{Collector, Config, NormBound, Rejection};
    use mc_learn_core::{CampaignId, model_hash};

    use super::*;
    use crate::rng::Streams;

    #[test]
    fn weight_attacks_move_the_update_as_documented() {
        let attack = Attack::default();
        let mut rng = Streams::new(1).stream("t");
        let base = [1.0f32, 1.0];
        let mut w = [2.0f32, 0.0];
        corrupt(Behaviour::SignFlip, &attack, &base, &mut w, &mut rng);
        assert_eq!(w, [-3.0, 5.0]);
        let mut w = [2.0f32, 0.0];
        corrupt(Behaviour::Scale, &attack, &base, &mut w, &mut rng);
        assert_eq!(w, [11.0, -9.0]);
        let mut w = [2.0f32, 0.0];
        corrupt(Behaviour::Honest, &attack, &base, &mut w, &mut rng);
        corrupt(Behaviour::Forged, &attack, &base, &mut w, &mut rng);
        assert_eq!(w, [2.0, 0.0]);
        let mut w = vec![0.0f32; 10_000];
        corrupt(Behaviour::Noise, &attack, &[], &mut w, &mut rng);
        let var = w.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / 1e4;
        assert!((0.9..1.1).contains(&var), "{var}");
        corrupt(Behaviour::Nan, &attack, &[], &mut w, &mut rng);
        assert_eq!(w.iter().filter(|v| v.is_nan()).count(), 1);
    }

    /// Signs an update as `key` and wraps it as the core does.
    fn envelope(key: &SigningKey, campaign: CampaignId, base: &[f32]) -> Vec<u8> {
        let u = update::sign(key, campaign, 1, model_hash(base), 10, vec![0.5; 4]).unwrap();
        let pieces = chunk::split(&u.encode(), UPDATE_CHUNK_BYTES).unwrap();
        let m = Message::Learn(LearnMessage::UpdateChunk {
            campaign: campaign.0,
            round: 1,
            chunk: pieces[0].encode(),
        });
        mc_protocols::encode(&m, MAX_MESSAGE_BYTES).unwrap()
    }

    fn received(bytes: &[u8]) -> SignedUpdate {
        let Ok(Message::Learn(LearnMessage::UpdateChunk { chunk, .. })) =
            mc_protocols::decode(bytes, MAX_MESSAGE_BYTES)
        else {
            panic!("not an update chunk");
        };
        let piece = Chunk::decode(&chunk, UPDATE_CHUNK_BYTES + CHUNK_OVERHEAD).unwrap();
        SignedUpdate::decode(&piece.data, MAX_UPDATE_BYTES).unwrap()
    }

    #[test]
    fn sabotaged_updates_are_refused_by_a_collector_for_the_documented_reason() {
        let member = SigningKey::from_bytes(&[1; 32]);
        let outsider = SigningKey::from_bytes(&[2; 32]);
        let campaign = CampaignId::from_name("c");
        let base = vec![0.0f32; 4];
        let collector = || {
            Collector::new(Config {
                campaign,
                round: 1,
                base_hash: model_hash(&base),
                num_params: 4,
                participants: [member.verifying_key().to_bytes()].into(),
                norm_bound: NormBound::Delta {
                    base: base.clone().into(),
                    max: 100.0,
                },
            })
            .unwrap()
        };
        let honest = envelope(&member, campaign, &base);
        assert!(collector().offer(received(&honest)).is_ok());
        for (behaviour, expected) in [
            (Behaviour::Forged, Rejection::BadSignature),
            (Behaviour::Tampered, Rejection::WeightsMismatch),
            (Behaviour::Impostor, Rejection::NotParticipant),
        ] {
            let bytes = sabotage(behaviour, &honest, &outsider).unwrap();
            assert_eq!(
                collector().offer(received(&bytes)).unwrap_err(),
                expected,
                "{behaviour:?}"
            );
        }
        assert_eq!(sabotage(Behaviour::Honest, &honest, &outsider), None);
        let hello = mc_protocols::encode(
            &Message::Hello(mc_protocols::Hello {
                region: "r".into(),
                version: "v".into(),
            }),
            MAX_MESSAGE_BYTES,
        )
        .unwrap();
        assert_eq!(sabotage(Behaviour::Forged, &hello, &outsider), None);
    }
}
