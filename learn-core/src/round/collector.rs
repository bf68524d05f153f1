//! [`Collector`]: the state of one round on one node.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::{Config, ConfigError, Evidence, NormBound, Rejection};
use crate::aggregate::{self, AggregateError, Rule};
use crate::digest::{AuthorKey, Digest, model_hash};
use crate::kernel;
use crate::update::{SignedHeader, SignedUpdate, UpdateError};

/// What [`Collector::offer`] reports for an accepted update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The update's author.
    pub author: AuthorKey,
    /// Updates accepted so far in this round, this one included.
    pub accepted: usize,
    /// Whether every participant has now made its statement for the round.
    pub complete: bool,
}

/// The result of a round.
#[derive(Clone, PartialEq)]
pub struct Outcome {
    /// The next global model.
    pub model: Vec<f32>,
    /// Its [`model_hash`]: the next round's `base_hash`.
    pub model_hash: Digest,
    /// [`Collector::accepted_digest`] of the set it was computed from.
    pub accepted_digest: Digest,
    /// Authors whose updates were aggregated, in key order.
    pub accepted: Vec<AuthorKey>,
    /// Participants that made no statement (late, down or silent).
    pub missing: Vec<AuthorKey>,
    /// Participants excluded for equivocation.
    pub excluded: Vec<AuthorKey>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a whole model into a log.
        f.debug_struct("Outcome")
            .field("model", &format_args!("[{} × f32]", self.model.len()))
            .field("model_hash", &self.model_hash)
            .field("accepted_digest", &self.accepted_digest)
            .field("accepted", &self.accepted.len())
            .field("missing", &self.missing.len())
            .field("excluded", &self.excluded.len())
            .finish()
    }
}

/// Collects the updates of one round; see the [module doc](super) for the
/// rules it applies.
///
/// Call order: [`new`](Self::new); then [`offer`](Self::offer) /
/// [`offer_all`](Self::offer_all) / [`offer_evidence`](Self::offer_evidence)
/// as things arrive; then [`aggregate`](Self::aggregate) once the caller
/// closes the round. It holds the accepted updates' weights until dropped.
#[derive(Debug)]
pub struct Collector {
    config: Config,
    /// Each author's first statement that passed checks 1–2.
    statements: BTreeMap<AuthorKey, SignedHeader>,
    accepted: BTreeMap<AuthorKey, SignedUpdate>,
    evidence: BTreeMap<AuthorKey, Evidence>,
}

/// The verdict on an update's content (check 4), computed before the
/// stateful checks but reported after them.
type Content = Result<(), Rejection>;

impl Collector {
    /// A collector for the round `config` describes.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        match &config.norm_bound {
            NormBound::Unbounded => {}
            NormBound::Weights(max) => check_bound(*max)?,
            NormBound::Delta { base, max } => {
                check_bound(*max)?;
                if base.len() != config.num_params as usize {
                    return Err(ConfigError::BaseShape {
                        expected: config.num_params,
                        actual: base.len(),
                    });
                }
                if model_hash(base) != config.base_hash {
                    return Err(ConfigError::BaseHash);
                }
            }
        }
        Ok(Self {
            config,
            statements: BTreeMap::new(),
            accepted: BTreeMap::new(),
            evidence: BTreeMap::new(),
        })
    }

    /// The round's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Offers one update. On refusal the update is dropped (equivocation
    /// keeps its signed header as evidence).
    pub fn offer(&mut self, update: SignedUpdate) -> Result<Accepted, Rejection> {
        if let Some(known) = self.known(&update) {
            return Err(known);
        }
        let content = self.check(&update)?;
        self.admit(update, content)
    }

    /// Offers many updates, verifying them in parallel (signatures, hashes,
    /// norms); the results are those of offering them one by one in order.
    pub fn offer_all(&mut self, updates: Vec<SignedUpdate>) -> Vec<Result<Accepted, Rejection>> {
        let checked: Vec<Result<Content, Rejection>> =
            updates.par_iter().map(|u| self.check(u)).collect();
        updates
            .into_iter()
            .zip(checked)
            .map(|(update, checked)| match self.known(&update) {
                Some(known) => Err(known),
                None => self.admit(update, checked?),
            })
            .collect()
    }

    /// Offers evidence of equivocation received from another node. If it
    /// proves that a participant equivocated in this round, the participant
    /// is excluded here too (and its update, if accepted, dropped).
    pub fn offer_evidence(&mut self, evidence: Evidence) -> Result<(), Rejection> {
        if !self.config.participants.contains(&evidence.author()) {
            return Err(Rejection::NotParticipant);
        }
        evidence.verify(self.config.campaign, self.config.round)?;
        self.exclude(evidence);
        Ok(())
    }

    /// Whether every participant has made its statement for the round
    /// (accepted, refused for its content, or excluded). The round can close.
    pub fn is_complete(&self) -> bool {
        self.statements.len() == self.config.participants.len()
    }

    /// The accepted updates, in author-key order.
    pub fn accepted(&self) -> impl Iterator<Item = &SignedUpdate> {
        self.accepted.values()
    }

    /// Evidence against the authors excluded for equivocation.
    pub fn evidence(&self) -> impl Iterator<Item = &Evidence> {
        self.evidence.values()
    }

    /// Participants that have made no statement yet.
    pub fn missing(&self) -> Vec<AuthorKey> {
        // Excluded authors have a statement too (see `exclude`).
        self.config
            .participants
            .iter()
            .filter(|k| !self.statements.contains_key(*k))
            .copied()
            .collect()
    }

    /// A digest of the accepted set: BLAKE3 over a domain tag, the campaign,
    /// round and base hash, the number of accepted updates and, in author-key
    /// order, each one's author, weights hash and sample count. Two nodes
    /// with equal digests aggregate to identical models; recording it per
    /// round makes divergence visible.
    pub fn accepted_digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(b"mc-fl-accepted/1");
        h.update(&self.config.campaign.0);
        h.update(&self.config.round.to_le_bytes());
        h.update(self.config.base_hash.as_bytes());
        h.update(&(self.accepted.len() as u64).to_le_bytes());
        for (author, u) in &self.accepted {
            h.update(author);
            h.update(u.header.weights_hash.as_bytes());
            h.update(&u.header.sample_count.to_le_bytes());
        }
        Digest(*h.finalize().as_bytes())
    }

    /// Aggregates the accepted updates with `rule`. With no accepted update
    /// this is [`AggregateError::NoUpdates`]: the caller keeps the base model
    /// and moves on, so missing participants never stall a campaign.
    pub fn aggregate(&self, rule: Rule) -> Result<Outcome, AggregateError> {
        rule.validate()?;
        // Every accepted update passed the shape, hash and finiteness checks.
        let inputs = self
            .accepted
            .values()
            .map(|u| aggregate::Input {
                sample_count: u.header.sample_count,
                weights_hash: u.header.weights_hash,
                weights: &u.weights,
            })
            .collect();
        let model = aggregate::aggregate_valid(rule, inputs, self.config.num_params as usize)?;
        Ok(Outcome {
            model_hash: model_hash(&model),
            model,
            accepted_digest: self.accepted_digest(),
            accepted: self.accepted.keys().copied().collect(),
            missing: self.missing(),
            excluded: self.evidence.keys().copied().collect(),
        })
    }

    /// Check 0: refusals that need only a lookup, so that replays of an
    /// update (common when updates are relayed) cost no hashing. Nothing is
    /// recorded, so a forged copy gains nothing from reaching here.
    fn known(&self, u: &SignedUpdate) -> Option<Rejection> {
        if self.evidence.contains_key(&u.author) {
            return Some(Rejection::Excluded);
        }
        let first = self.statements.get(&u.author)?;
        (first.header == u.header).then_some(Rejection::Duplicate)
    }

    /// Checks 1, 2 and the content verdict of 4: everything that depends on
    /// the update alone.
    fn check(&self, u: &SignedUpdate) -> Result<Content, Rejection> {
        let c = &self.config;
        let h = &u.header;
        if !c.participants.contains(&u.author) {
            return Err(Rejection::NotParticipant);
        }
        if h.campaign != c.campaign {
            return Err(Rejection::WrongCampaign);
        }
        if h.round != c.round {
            return Err(Rejection::WrongRound {
                expected: c.round,
                got: h.round,
            });
        }
        if h.base_hash != c.base_hash {
            return Err(Rejection::WrongBase);
        }
        for got in [u64::from(h.num_params), u.weights.len() as u64] {
            if got != u64::from(c.num_params) {
                return Err(Rejection::WrongShape {
                    expected: c.num_params,
                    got,
                });
            }
        }
        u.verify_signature().map_err(|_| Rejection::BadSignature)?;
        u.verify_weights().map_err(|e| match e {
            UpdateError::ShapeMismatch { .. } => Rejection::WrongShape {
                expected: c.num_params,
                got: u.weights.len() as u64,
            },
            _ => Rejection::WeightsMismatch,
        })?;
        Ok(self.content(&u.weights))
    }

    /// Check 4: finite, and within the norm bound. One pass over the
    /// weights in the common case.
    fn content(&self, w: &[f32]) -> Content {
        let (norm, max) = match &self.config.norm_bound {
            NormBound::Delta { base, max } => {
                let sq = kernel::sq_distance_blocked(w, base);
                // A NaN or infinite weight makes the distance non-finite; so
                // can finite weights whose squares overflow f32 (a huge delta).
                if !sq.is_finite() && !kernel::sq_norm(w).is_finite() {
                    return Err(Rejection::NonFinite);
                }
                (sq.sqrt(), *max)
            }
            bound => {
                // Finite exactly when every weight is (see kernel::sq_norm).
                let sq = kernel::sq_norm(w);
                if !sq.is_finite() {
                    return Err(Rejection::NonFinite);
                }
                match bound {
                    NormBound::Weights(max) => (sq.sqrt(), *max),
                    _ => return Ok(()),
                }
            }
        };
        // An infinite norm is refused by the comparison too.
        if norm <= max {
            Ok(())
        } else {
            Err(Rejection::NormTooLarge { norm, max })
        }
    }

    /// Check 3, then the content verdict, then acceptance. Callers have run
    /// [`known`](Self::known): the author is not excluded and this is not
    /// its statement again.
    fn admit(&mut self, update: SignedUpdate, content: Content) -> Result<Accepted, Rejection> {
        let author = update.author;
        let statement = update.signed_header();
        if let Some(first) = self.statements.get(&author) {
            debug_assert!(first.header != statement.header && !self.evidence.contains_key(&author));
            let evidence = Evidence {
                first: *first,
                second: statement,
            };
            self.exclude(evidence);
            return Err(Rejection::Equivocation);
        }
        self.statements.insert(author, statement);
        content?;
        self.accepted.insert(author, update);
        Ok(Accepted {
            author,
            accepted: self.accepted.len(),
            complete: self.is_complete(),
        })
    }

    /// Records verified evidence and excludes its author from the round.
    fn exclude(&mut self, evidence: Evidence) {
        let author = evidence.author();
        self.accepted.remove(&author);
        // An excluded author has spoken: it no longer holds the round open.
        self.statements.entry(author).or_insert(evidence.first);
        self.evidence.entry(author).or_insert(evidence);
    }
}

fn check_bound(max: f64) -> Result<(), ConfigError> {
    if max >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::BadBound(max))
    }
}
