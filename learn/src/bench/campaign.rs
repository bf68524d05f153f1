//! A federated campaign run in one process on the node's own state
//! machine, [`mc_learn_core::campaign::Campaign`]: one [`Campaign`] stands
//! for every node (nodes that accept the same set hold byte-identical
//! models, which is what [`OfferOrder`] lets a test check), and this module
//! plays all the members:
//!
//! 1. **Round 0, moments.** Every participant signs
//!    [`federated::moments_vector`] of its training rows (its sample count
//!    is its row count) and offers it; the campaign pools the accepted ones
//!    and [`federated::normaliser_from_moments`] turns the result into
//!    everyone's normaliser.
//! 2. **Rounds 1..=R, model.** Each participant runs
//!    [`federated::local_update`] as [`Campaign::work`] says (base model,
//!    step plan, drift correction, shuffling seed), a Byzantine one then
//!    corrupts its weights ([`Attack`]), and each signs with its own ed25519
//!    key; the updates are offered and [`Campaign::close`] aggregates them
//!    with the campaign's rule.
//!
//! Byzantine participants report honest moments in round 0 and attack the
//! model rounds only: every attack is defined relative to the round's base
//! model, which the moments round does not have.
//!
//! Local training of the participants is independent within a round and
//! runs on `jobs` threads; every result is the same whatever the thread
//! count (each participant's training is deterministic on the CPU), and the
//! updates are offered in the chosen order after all are trained.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use mc_learn_core::aggregate::{AggregateError, Rule};
use mc_learn_core::campaign::{Campaign, Settings as CampaignSettings, Work};
use mc_learn_core::ed25519_dalek::SigningKey;
use mc_learn_core::init::Init;
use mc_learn_core::plan::{LocalTraining, StepPlan};
use mc_learn_core::round::Rejection;
use mc_learn_core::{AuthorKey, CampaignId, ModelSchema, model_hash, update};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::ChaCha8Rng};
use serde::{Deserialize, Serialize};
use tch::Device;

use super::baseline::score_all;
use super::{BenchError, data::Org};
use crate::{Model, ModelError, Normaliser, TrainConfig, federated};

/// The key under which [`Run::rejections`] counts participants whose local
/// training failed (they sit the round out, as on the node).
pub const TRAINING_FAILED: &str = "local_training_failed";

/// What a campaign is run with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Model rounds after the moments round.
    pub rounds: u32,
    /// Local epochs per round of a member with the median row count
    /// ([`mc_learn_core::plan`]).
    pub local_epochs: u32,
    /// Local training: batch size, round 1's learning rate and device (the
    /// rest is the round's [`StepPlan`]).
    pub train: TrainConfig,
    /// The aggregation rule of the model rounds.
    pub rule: Rule,
    /// Correct client drift with control variates ([`mc_learn_core::scaffold`]).
    pub drift_correction: bool,
    /// Byzantine participants train without the drift correction the
    /// protocol gives them (they then corrupt that uncorrected update), so
    /// their own variates cannot drive their updates past the norm bound.
    pub byzantine_skip_correction: bool,
    /// Bound on `‖update − base‖₂` in the model rounds.
    pub max_update_norm: f64,
    /// The last round's learning rate as a fraction of round 1's
    /// ([`LocalTraining::final_rate_fraction`]).
    pub final_rate_fraction: f64,
    /// The campaign seed: initial weights, local shuffling and the
    /// participants' keys.
    pub seed: u64,
    /// How the initial weights are drawn.
    pub init: Init,
    /// Order in which each round's updates reach the collector.
    pub offer_order: OfferOrder,
    /// Threads for the participants' local training.
    pub jobs: usize,
    /// Score the global model on every organisation's held-out rows after
    /// each round (a learning curve; nothing in the run depends on it).
    pub track: bool,
}

/// The order in which a round's updates are offered to its collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferOrder {
    /// Participant index order.
    Forward,
    /// Reverse index order.
    Reverse,
    /// A permutation drawn per round from this seed.
    Shuffled(u64),
}

/// How a Byzantine participant corrupts the weights `w` it trained
/// honestly from the round's base `b` (before signing them with its own,
/// valid key).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attack {
    /// `w' = b − s·(w − b)`: its update points against its honest one,
    /// `s` times as far.
    SignFlip {
        /// `s`.
        scale: f32,
    },
    /// `w' = b + k·(w − b)`: its honest update, `k` times as far.
    Scale {
        /// `k`.
        factor: f32,
    },
}

impl Attack {
    /// The corrupted weights.
    pub fn apply(&self, base: &[f32], honest: &[f32]) -> Vec<f32> {
        let k = match *self {
            Attack::SignFlip { scale } => -scale,
            Attack::Scale { factor } => factor,
        };
        base.iter()
            .zip(honest)
            .map(|(&b, &w)| b + k * (w - b))
            .collect()
    }

    /// A short label for tables.
    pub fn label(&self) -> String {
        match *self {
            Attack::SignFlip { scale } => format!("sign-flip ×{scale}"),
            Attack::Scale { factor } => format!("scaled ×{factor}"),
        }
    }
}

/// What one model round did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundStats {
    /// The round (1-based; 0 is the moments round).
    pub round: u32,
    /// Updates accepted.
    pub accepted: usize,
    /// Updates refused.
    pub rejected: usize,
    /// Wall time of the participants' local training, all of them, ms.
    pub train_ms: f64,
    /// Wall time of offering every update to the collector (signature,
    /// hash, membership and norm checks), ms.
    pub verify_ms: f64,
    /// Wall time of [`Campaign::close`] (aggregation and the control
    /// variates), ms.
    pub aggregate_ms: f64,
    /// With [`Settings::track`]: the new global model's mean and lowest R²
    /// over the organisations' held-out rows.
    pub held_out_r2: Option<(f64, f64)>,
}

/// The outcome of a campaign.
#[derive(Debug)]
pub struct Run {
    /// The normaliser pooled in round 0.
    pub normaliser: Normaliser,
    /// The final global weights.
    pub weights: Vec<f32>,
    /// [`model_hash`] of `weights`, hex.
    pub model_hash: String,
    /// One entry per model round.
    pub rounds: Vec<RoundStats>,
    /// Updates refused, by reason, over all rounds (moments included), and
    /// failed local steps under [`TRAINING_FAILED`].
    pub rejections: BTreeMap<String, u64>,
    /// Corrupted updates offered, over all rounds.
    pub byzantine_offered: u64,
    /// Corrupted updates accepted, over all rounds.
    pub byzantine_accepted: u64,
}

/// Runs a campaign over `orgs` (training rows only); the participants at
/// `byzantine` corrupt their model updates with `attack`. `progress` hears
/// one line per round.
pub fn run(
    schema: &ModelSchema,
    orgs: &[Org],
    settings: &Settings,
    attack: Option<(Attack, &[usize])>,
    progress: &mut dyn FnMut(&str),
) -> Result<Run, BenchError> {
    if orgs.is_empty() {
        return Err(BenchError::NoOrgs);
    }
    let keys = participant_keys(orgs.len(), settings.seed);
    let participants: BTreeSet<AuthorKey> =
        keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let id = CampaignId::from_name(&format!("mc-learn-bench/{}/{}", schema.name, settings.seed));
    let mut order_rng = match settings.offer_order {
        OfferOrder::Shuffled(seed) => Some(ChaCha8Rng::seed_from_u64(seed)),
        _ => None,
    };
    let mut offer_order = || -> Vec<usize> {
        let mut order: Vec<usize> = (0..orgs.len()).collect();
        match (&settings.offer_order, order_rng.as_mut()) {
            (OfferOrder::Reverse, _) => order.reverse(),
            (OfferOrder::Shuffled(_), Some(rng)) => order.shuffle(rng),
            _ => {}
        }
        order
    };
    let mut rejections = BTreeMap::new();
    let mut campaign = Campaign::new(CampaignSettings {
        id,
        model: schema.clone(),
        participants,
        training: LocalTraining {
            local_epochs: settings.local_epochs,
            batch_size: settings.train.batch_size as u32,
            learning_rate: settings.train.learning_rate,
            rounds: settings.rounds,
            final_rate_fraction: settings.final_rate_fraction,
        },
        rule: settings.rule,
        drift_correction: settings.drift_correction,
        max_update_norm: settings.max_update_norm,
        seed: settings.seed,
        init: settings.init,
    })?;

    // Round 0: moments, signed and collected like any update.
    for i in offer_order() {
        let moments = federated::moments_vector(schema, &orgs[i].train);
        let signed = update::sign(
            &keys[i],
            id,
            0,
            campaign.base_hash(),
            orgs[i].train.len() as u64,
            moments,
        )?;
        if let Err(rejection) = campaign.offer(signed) {
            count(&mut rejections, &rejection);
        }
    }
    if let Some(error) = campaign.close()?.error {
        return Err(error.into());
    }
    let moments = campaign
        .moments()
        .ok_or(BenchError::Aggregate(AggregateError::NoUpdates))?;
    let normaliser =
        federated::normaliser_from_moments(schema, moments).map_err(BenchError::Moments)?;

    let authors: Vec<AuthorKey> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
    let mut rounds = Vec::with_capacity(settings.rounds as usize);
    let (mut byzantine_offered, mut byzantine_accepted) = (0, 0);
    while !campaign.completed() {
        let round = campaign.round();
        let base = campaign.global().clone();
        // A measurement reported to people, not an input to any decision.
        let started = Instant::now();
        let mut works = Vec::with_capacity(authors.len());
        for (i, author) in authors.iter().enumerate() {
            // After the moments every round is a model round; a campaign
            // that says otherwise has nothing for the members to train.
            let Work::Update {
                plan,
                mut correction,
                seed,
                ..
            } = campaign.work(author)
            else {
                return Err(BenchError::Aggregate(AggregateError::NoUpdates));
            };
            let attacker = attack.is_some_and(|(_, who)| who.contains(&i));
            if attacker && settings.byzantine_skip_correction {
                correction = None;
            }
            works.push(LocalWork {
                plan,
                correction,
                seed,
            });
        }
        let trained = train_all(
            schema,
            &normaliser,
            &base,
            orgs,
            &works,
            settings.train.device,
            settings.jobs,
        );
        let train_ms = ms_since(started);
        let base_hash = campaign.base_hash();
        let mut slots = Vec::with_capacity(orgs.len());
        for (i, result) in trained.into_iter().enumerate() {
            // The node logs a failed local step and sits the round out.
            let Ok((weights, samples)) = result else {
                *rejections.entry(TRAINING_FAILED.to_owned()).or_default() += 1;
                slots.push(None);
                continue;
            };
            let corrupt = attack.filter(|(_, who)| who.contains(&i));
            let weights = match corrupt {
                Some((attack, _)) => attack.apply(&base, &weights),
                None => weights,
            };
            let signed = update::sign(&keys[i], id, round, base_hash, samples, weights)?;
            slots.push(Some((signed, corrupt.is_some())));
        }
        let (mut accepted, mut rejected) = (0, 0);
        let started = Instant::now();
        for i in offer_order() {
            let Some((signed, corrupt)) = slots[i].take() else {
                continue;
            };
            byzantine_offered += u64::from(corrupt);
            match campaign.offer(signed) {
                Ok(_) => {
                    accepted += 1;
                    byzantine_accepted += u64::from(corrupt);
                }
                Err(rejection) => {
                    rejected += 1;
                    count(&mut rejections, &rejection);
                }
            }
        }
        let verify_ms = ms_since(started);
        let started = Instant::now();
        let closed = campaign.close()?;
        let aggregate_ms = ms_since(started);
        if let Some(error) = closed.correction_stopped {
            return Err(error.into());
        }
        match closed.error {
            // Nothing accepted: the node keeps the model, and so does the
            // campaign.
            None | Some(AggregateError::NoUpdates) => {}
            Some(error) => return Err(error.into()),
        }
        let global = campaign.global();
        let held_out_r2 = if settings.track {
            let model =
                Model::from_flat(schema, normaliser.clone(), global, settings.train.device)?;
            let r2: Vec<f64> = score_all(&model, orgs)?.iter().map(|s| s.r2).collect();
            Some((
                r2.iter().sum::<f64>() / r2.len() as f64,
                r2.iter().copied().fold(f64::INFINITY, f64::min),
            ))
        } else {
            None
        };
        let stats = RoundStats {
            round,
            accepted,
            rejected,
            train_ms,
            verify_ms,
            aggregate_ms,
            held_out_r2,
        };
        progress(&format!(
            "  round {round}/{}: {accepted} accepted, {rejected} refused; train {:.0} ms, verify {:.2} ms, aggregate {:.2} ms{}",
            settings.rounds,
            stats.train_ms,
            stats.verify_ms,
            stats.aggregate_ms,
            held_out_r2
                .map(|(mean, min)| format!("; held-out R² mean {mean:.3}, min {min:.3}"))
                .unwrap_or_default()
        ));
        rounds.push(stats);
    }
    let global = campaign.global();
    Ok(Run {
        normaliser,
        model_hash: model_hash(global).to_string(),
        weights: global.to_vec(),
        rounds,
        rejections,
        byzantine_offered,
        byzantine_accepted,
    })
}

/// One participant's new weights and sample count, or why its training failed.
type LocalUpdate = Result<(Vec<f32>, u64), ModelError>;

/// What one participant runs in a round ([`Work::Update`] less the base).
struct LocalWork {
    plan: StepPlan,
    correction: Option<Arc<[f32]>>,
    seed: u64,
}

/// Every participant's local update of one round, in participant order.
fn train_all(
    schema: &ModelSchema,
    normaliser: &Normaliser,
    global: &[f32],
    orgs: &[Org],
    works: &[LocalWork],
    device: Device,
    jobs: usize,
) -> Vec<LocalUpdate> {
    let train = |i: usize| {
        federated::local_update(
            schema,
            normaliser,
            global,
            &orgs[i].train,
            &works[i].plan,
            works[i].correction.as_deref(),
            works[i].seed,
            device,
        )
    };
    let jobs = jobs.clamp(1, orgs.len().max(1));
    if jobs == 1 {
        return (0..orgs.len()).map(train).collect();
    }
    // Participant i goes to worker i mod jobs; results are put back in
    // participant order, so the thread count changes nothing but speed.
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|w| {
                let train = &train;
                scope.spawn(move || {
                    (w..orgs.len())
                        .step_by(jobs)
                        .map(|i| (i, train(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a training thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut out: Vec<Option<LocalUpdate>> = (0..orgs.len()).map(|_| None).collect();
    for (i, result) in results {
        out[i] = Some(result);
    }
    out.into_iter()
        .map(|r| r.expect("every participant was trained by one worker"))
        .collect()
}

/// One ed25519 key per participant, drawn from the campaign seed.
pub fn participant_keys(n: usize, seed: u64) -> Vec<SigningKey> {
    // A stream apart from the one that draws the initial weights.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6B65_7973);
    (0..n)
        .map(|_| {
            let mut secret = [0u8; 32];
            rng.fill_bytes(&mut secret);
            SigningKey::from_bytes(&secret)
        })
        .collect()
}

fn count(rejections: &mut BTreeMap<String, u64>, rejection: &Rejection) {
    *rejections.entry(rejection.name().to_owned()).or_default() += 1;
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attacks_move_the_update_as_documented() {
        let base = [1.0, 2.0];
        let honest = [2.0, 1.0];
        assert_eq!(
            Attack::SignFlip { scale: 4.0 }.apply(&base, &honest),
            vec![-3.0, 6.0]
        );
        assert_eq!(
            Attack::Scale { factor: 10.0 }.apply(&base, &honest),
            vec![11.0, -8.0]
        );
    }

    #[test]
    fn keys_are_seeded_and_distinct() {
        let a = participant_keys(3, 1);
        let b = participant_keys(3, 1);
        assert_eq!(a[2].to_bytes(), b[2].to_bytes());
        assert_ne!(a[0].to_bytes(), a[1].to_bytes());
        assert_ne!(a[0].to_bytes(), participant_keys(3, 2)[0].to_bytes());
    }
}
