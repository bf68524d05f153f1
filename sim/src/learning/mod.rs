//! Federated learning in a scenario (`[learning]`): a consortium of
//! organisations, one per node, training one model together with the real
//! node core's campaigns, some of them Byzantine.
//!
//! ```toml
//! [learning]
//! model = "latency"           # a built-in model: latency, error_rate, memory, anomaly
//! rounds = 10                 # model rounds, after the moments round (round 0)
//! local_epochs = 2            # epochs of the median member: every one runs these steps
//! aggregation = "median"      # fedavg | median | trimmed-mean:0.2 | multi-krum:f=2,m=5
//! round_deadline_s = 30       # how long a round waits for missing participants
//! max_update_norm = 1000      # bound on ‖update − base‖₂ (default: the core's)
//! rows_cap = 2000             # at most this many hours of data per organisation
//! start_at_s = 10             # when node `creator` creates the campaign
//! creator = 0
//! tick_ms = 500               # the cores' learning_tick_ms
//! batch_size = 64             # the campaign's batch size (default: the node's)
//! learning_rate = 0.002       # the campaign's round-1 rate (default: the node's)
//! compute_ms = 200            # simulated duration of a local job: a fixed part
//! compute_us_per_row_epoch = 20   # plus this per row processed
//! compute_spread = 0.5        # node k is slower by a factor drawn in [1, 1 + spread]
//! score_floor = -50           # the final model's R² (F1) on every honest org's held-out rows …
//! pooled_score_floor = 0.3    # … and on all of them pooled
//! byzantine = { sign_flip = 3, scale = 3, noise = 2, nan = 1, forged = 1, tampered = 1, impostor = 1 }
//! attack = { flip_factor = 4.0, scale_factor = 10.0, noise_std = 1.0, moments = false }
//! ```
//!
//! # What the simulator does
//!
//! - **Data.** [`mc_learn_core::synth::consortium`] draws one organisation
//!   profile per node from the run's seed, [`mc_learn_core::synth::generate`]
//!   makes its hourly rows (at most `rows_cap`), and the model's columns are
//!   selected. A node trains on the first 80 % of its rows, as `mc-node`'s
//!   learner does; the last 20 % are held out for the final R².
//! - **The campaign.** At `start_at_s` node `creator` is sent
//!   `ApiRequest::CreateCampaign` with every node as a participant (each one's
//!   key read from its core), and `batch_size` / `learning_rate` when the
//!   section sets them (otherwise the core's defaults,
//!   `DEFAULT_CAMPAIGN_BATCH` and `DEFAULT_CAMPAIGN_LR`). From there on the cores run the campaign
//!   themselves: declaration by the knowledge document, signed updates sent
//!   point to point, collectors, deadlines, aggregation.
//! - **Local work.** The engine serves each `Output::Train` with the same
//!   `mc_learn` calls as `mc-node`'s learner (moments, or `campaign_update`
//!   from the round's base with the pooled normaliser, running the job's
//!   step plan: the same number of steps on every participant) on the CPU
//!   with one torch thread, and feeds `Input::Trained` back after a
//!   simulated compute time ([`train`]): `compute_ms` plus
//!   `compute_us_per_row_epoch` per row processed — the training rows once
//!   for the moments, `steps × batch_size` in a model round — times the
//!   node's slowness. (The real computation takes about 5 µs per row for
//!   the built-in models on one core of the 2-core development VM; the
//!   default of 20 µs stands for a busier or smaller machine. The key keeps
//!   its older name.)
//! - **Byzantine participants** ([`Behaviour`], drawn from the seed among the
//!   nodes other than the creator). `sign_flip`, `scale`, `noise` and `nan`
//!   change the weights the driver hands to its core, which then signs them:
//!   validly signed bad updates that robust aggregation (or, for NaN, the
//!   collector's finiteness check) must handle. They attack the model
//!   rounds; the moments of round 0 only with `attack.moments = true` (NaN
//!   always), as `mc-learn bench federated` does: under a robust rule the
//!   core pools the moments with `mc_learn_core::plan::pool_moments` (the
//!   median of the means as the centre, the median of every member's mean
//!   squared deviation from it as the variance), which a minority of
//!   corrupted moments cannot move far, but corrupted moments still shift
//!   the normalisation every honest model depends on. `forged`, `tampered`
//!   and `impostor` nodes train honestly, but the simulator rewrites every update
//!   chunk they send, after signing ([`attack::sabotage`]): a signature by
//!   another key (`bad_signature`), weights changed under a valid signature
//!   (`weights_mismatch`), or the update re-signed by a key outside the
//!   campaign (`not_participant`).
//!
//! The core sends updates only to connected participants, as a consortium's
//! members would dial each other: a learning scenario's topology is a full
//! mesh, whatever `[network] peers` says.
//!
//! Learning is off unless a scenario has a `[learning]` section; knowledge
//! scenarios run exactly as before (no learning timer in the cores).

pub mod attack;
pub mod train;

use mc_core::learning;
use mc_learn_core::aggregate::Rule;
use mc_learn_core::schema::{self, ModelSchema};
use rand::rngs::ChaCha8Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The `[learning]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// A built-in model of [`mc_learn_core::schema::builtin`].
    pub model: String,
    /// Model rounds after the moments round.
    pub rounds: u32,
    /// Local epochs per round, of the member with the median row count
    /// (every participant runs the steps these take).
    #[serde(default = "default_local_epochs")]
    pub local_epochs: u32,
    /// The campaign's aggregation rule.
    #[serde(default = "default_aggregation")]
    pub aggregation: Rule,
    /// How long a round waits for missing participants.
    pub round_deadline_s: f64,
    /// Bound on `‖update − base‖₂` (default: the core's).
    #[serde(default)]
    pub max_update_norm: Option<f64>,
    /// At most this many rows per organisation (default: the profile's).
    #[serde(default)]
    pub rows_cap: Option<usize>,
    /// When the campaign is created.
    pub start_at_s: f64,
    /// The node that creates it.
    #[serde(default)]
    pub creator: usize,
    /// The cores' `learning_tick_ms`.
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// The campaign's rows per local step (default: the core's
    /// `DEFAULT_CAMPAIGN_BATCH`).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// The campaign's learning rate in model round 1, decaying to a tenth
    /// by the last (default: the core's `DEFAULT_CAMPAIGN_LR`).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Whether the campaign corrects client drift (default: the core's
    /// `mc_learn_core::scaffold::default_for`: on under FedAvg and Multi-Krum).
    #[serde(default)]
    pub drift_correction: Option<bool>,
    /// The last round's learning rate as a fraction of round 1's (default:
    /// the core's `DEFAULT_FINAL_RATE_FRACTION`).
    #[serde(default)]
    pub final_rate_fraction: Option<f64>,
    /// The campaign's starting weights (default: the core's
    /// `DEFAULT_CAMPAIGN_INIT`).
    #[serde(default)]
    pub init: Option<mc_core::learning::Init>,
    /// Fixed part of a local job's simulated duration.
    #[serde(default = "default_compute_ms")]
    pub compute_ms: f64,
    /// Simulated duration per row processed: the training rows once for
    /// the moments, `steps × batch_size` in a model round (the name is
    /// older than counting local work in steps).
    #[serde(default = "default_compute_us")]
    pub compute_us_per_row_epoch: f64,
    /// Each node is slower than the fastest by a factor in `[1, 1 + spread]`.
    #[serde(default)]
    pub compute_spread: f64,
    /// The final model's score (R² for regression, F1 for classification)
    /// must reach this on every honest organisation's held-out rows.
    #[serde(default)]
    pub score_floor: Option<f64>,
    /// The same score over every honest organisation's held-out rows pooled
    /// must reach this. R² on one small organisation's last rows is often
    /// far below 0 when their latency barely varies; pooled, the figure is
    /// the model's.
    #[serde(default)]
    pub pooled_score_floor: Option<f64>,
    /// How many participants misbehave, and how.
    #[serde(default)]
    pub byzantine: Byzantine,
    /// How hard the weight attacks are.
    #[serde(default)]
    pub attack: Attack,
}

fn default_local_epochs() -> u32 {
    1
}

fn default_aggregation() -> Rule {
    Rule::Median
}

fn default_tick_ms() -> u64 {
    500
}

fn default_compute_ms() -> f64 {
    200.0
}

fn default_compute_us() -> f64 {
    20.0
}

/// How many participants of each Byzantine kind (`byzantine = { … }`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Byzantine {
    /// Send `base − flip_factor·(w − base)`, validly signed.
    pub sign_flip: usize,
    /// Send `base + scale_factor·(w − base)`, validly signed.
    pub scale: usize,
    /// Send `w` plus Gaussian noise of `noise_std`, validly signed.
    pub noise: usize,
    /// Send weights with a NaN, validly signed.
    pub nan: usize,
    /// Updates go out with a signature by another key.
    pub forged: usize,
    /// Updates go out with weights changed after signing.
    pub tampered: usize,
    /// Updates go out re-signed by a key outside the campaign.
    pub impostor: usize,
}

impl Byzantine {
    /// Every kind with its count, in a fixed order.
    pub fn counts(&self) -> [(Behaviour, usize); 7] {
        [
            (Behaviour::SignFlip, self.sign_flip),
            (Behaviour::Scale, self.scale),
            (Behaviour::Noise, self.noise),
            (Behaviour::Nan, self.nan),
            (Behaviour::Forged, self.forged),
            (Behaviour::Tampered, self.tampered),
            (Behaviour::Impostor, self.impostor),
        ]
    }

    /// Byzantine participants in all.
    pub fn total(&self) -> usize {
        self.counts().iter().map(|(_, c)| c).sum()
    }
}

/// Strengths of the weight attacks (`attack = { … }`); the defaults are
/// those of `mc-learn bench federated`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Attack {
    /// `s` of sign-flip: `w' = base − s·(w − base)`.
    pub flip_factor: f32,
    /// `s` of scaling: `w' = base + s·(w − base)`.
    pub scale_factor: f32,
    /// Standard deviation of the noise added to every weight.
    pub noise_std: f32,
    /// Whether sign-flip, scale and noise participants also corrupt their
    /// round-0 moments (the core takes their coordinate-wise median).
    pub moments: bool,
}

impl Default for Attack {
    fn default() -> Self {
        Self {
            flip_factor: 4.0,
            scale_factor: 10.0,
            noise_std: 1.0,
            moments: false,
        }
    }
}

/// What one participant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Trains and sends what it trained.
    Honest,
    /// Validly signed, sign-flipped update.
    SignFlip,
    /// Validly signed, scaled update.
    Scale,
    /// Validly signed, noisy update.
    Noise,
    /// Validly signed update with a NaN weight.
    Nan,
    /// The signature on the wire is another key's.
    Forged,
    /// The weights on the wire are not the signed ones.
    Tampered,
    /// The update on the wire is signed by a non-participant.
    Impostor,
}

impl Behaviour {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Honest => "honest",
            Behaviour::SignFlip => "sign-flip",
            Behaviour::Scale => "scale",
            Behaviour::Noise => "noise",
            Behaviour::Nan => "nan",
            Behaviour::Forged => "forged",
            Behaviour::Tampered => "tampered",
            Behaviour::Impostor => "impostor",
        }
    }

    /// Whether the simulator rewrites its updates on the wire.
    pub fn on_wire(self) -> bool {
        matches!(
            self,
            Behaviour::Forged | Behaviour::Tampered | Behaviour::Impostor
        )
    }

    /// Whether it changes the weights it hands its core in `round` (see
    /// [`Attack::moments`]).
    pub fn corrupts(self, round: u32, attack: &Attack) -> bool {
        match self {
            Behaviour::SignFlip | Behaviour::Scale | Behaviour::Noise => {
                round > 0 || attack.moments
            }
            Behaviour::Nan => true,
            _ => false,
        }
    }

    /// Whether no collector may accept its updates (they are never valid).
    pub fn never_valid(self) -> bool {
        self == Behaviour::Nan || self.on_wire()
    }

    /// The collector's rejection counter its updates must show up in at
    /// every honest node (at least in round 0, before a wire saboteur's own
    /// model drifts from the others' and `wrong_base` catches it first).
    pub fn rejection(self) -> Option<&'static str> {
        match self {
            Behaviour::Nan => Some("non_finite"),
            Behaviour::Forged => Some("bad_signature"),
            Behaviour::Tampered => Some("weights_mismatch"),
            Behaviour::Impostor => Some("not_participant"),
            _ => None,
        }
    }
}

impl Config {
    /// The model's schema.
    pub fn schema(&self) -> Result<ModelSchema, Error> {
        schema::builtin_named(&self.model).ok_or_else(|| {
            let names: Vec<String> = schema::builtin().into_iter().map(|s| s.name).collect();
            Error::Invalid(format!(
                "[learning] model {:?} is not a built-in model ({})",
                self.model,
                names.join(", ")
            ))
        })
    }

    /// The latest a campaign can end: every round waits out its deadline.
    pub fn worst_case_end_s(&self) -> f64 {
        self.start_at_s + f64::from(self.rounds + 1) * self.round_deadline_s
    }

    /// Checks the section against a scenario of `nodes` nodes.
    pub fn validate(&self, nodes: usize) -> Result<(), Error> {
        let invalid = |why: String| Err(Error::Invalid(format!("[learning] {why}")));
        let schema = self.schema()?;
        if self.rounds == 0 || self.rounds > 1_000 || self.local_epochs == 0 {
            return invalid("needs rounds in 1-1000 and local_epochs ≥ 1".into());
        }
        if let Err(e) = self.aggregation.validate() {
            return invalid(e.to_string());
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !positive(self.round_deadline_s) || !positive(self.start_at_s) {
            return invalid("round_deadline_s and start_at_s must be > 0".into());
        }
        if self.max_update_norm.is_some_and(|m| !positive(m)) {
            return invalid("max_update_norm must be > 0".into());
        }
        if self.rows_cap.is_some_and(|r| r < 10) {
            return invalid("rows_cap below 10 leaves nothing to hold out".into());
        }
        if self.tick_ms == 0 {
            return invalid("tick_ms must be > 0".into());
        }
        if self
            .batch_size
            .is_some_and(|b| b == 0 || b > learning::MAX_CAMPAIGN_BATCH)
        {
            return invalid(format!(
                "batch_size must be 1-{}",
                learning::MAX_CAMPAIGN_BATCH
            ));
        }
        if self
            .learning_rate
            .is_some_and(|r| !positive(r) || r > learning::MAX_CAMPAIGN_LR)
        {
            return invalid(format!(
                "learning_rate must be in (0, {}]",
                learning::MAX_CAMPAIGN_LR
            ));
        }
        if !non_negative(self.compute_ms)
            || !non_negative(self.compute_us_per_row_epoch)
            || !non_negative(self.compute_spread)
        {
            return invalid(
                "compute_ms, compute_us_per_row_epoch, compute_spread must be ≥ 0".into(),
            );
        }
        if self.creator >= nodes {
            return invalid(format!("creator {} does not exist", self.creator));
        }
        if self.byzantine.total() >= nodes {
            return invalid(format!(
                "{} Byzantine participants leave no honest one among {nodes}",
                self.byzantine.total()
            ));
        }
        let a = self.attack;
        if ![a.flip_factor, a.scale_factor, a.noise_std]
            .iter()
            .all(|v| v.is_finite())
        {
            return invalid("attack strengths must be finite".into());
        }
        // An update must fit one chunk for the wire saboteurs to rewrite it.
        let update_bytes = 4 * schema.num_params() + 256;
        if update_bytes + mc_learn_core::chunk::CHUNK_OVERHEAD > learning::UPDATE_CHUNK_BYTES {
            return invalid(format!(
                "model {} is too large for one update chunk",
                self.model
            ));
        }
        Ok(())
    }
}

/// Who does what: `nodes` behaviours, the creator honest, the Byzantine
/// ones drawn with `rng`.
pub fn assign(config: &Config, nodes: usize, rng: &mut ChaCha8Rng) -> Vec<Behaviour> {
    let mut others: Vec<usize> = (0..nodes).filter(|n| *n != config.creator).collect();
    others.shuffle(rng);
    let mut behaviours = vec![Behaviour::Honest; nodes];
    let mut picks = others.into_iter();
    for (behaviour, count) in config.byzantine.counts() {
        for node in picks.by_ref().take(count) {
            behaviours[node] = behaviour;
        }
    }
    behaviours
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Streams;

    fn config() -> Config {
        toml::from_str(
            "model = \"latency\"\nrounds = 3\nround_deadline_s = 20\nstart_at_s = 5\n\
             byzantine = { sign_flip = 2, nan = 1, forged = 1 }\n",
        )
        .unwrap()
    }

    #[test]
    fn defaults_follow_the_node_learner() {
        let c = config();
        // Unset: the campaign takes the core's defaults.
        assert_eq!((c.batch_size, c.learning_rate), (None, None));
        assert_eq!(c.aggregation, Rule::Median);
        assert_eq!(c.byzantine.total(), 4);
        assert_eq!(c.worst_case_end_s(), 5.0 + 4.0 * 20.0);
        c.validate(10).unwrap();
    }

    #[test]
    fn byzantine_nodes_are_drawn_from_the_seed_and_spare_the_creator() {
        let c = config();
        let draw = |seed| assign(&c, 10, &mut Streams::new(seed).stream("learning"));
        let a = draw(1);
        assert_eq!(a, draw(1));
        assert_eq!(a[0], Behaviour::Honest);
        assert_eq!(a.iter().filter(|b| **b == Behaviour::SignFlip).count(), 2);
        assert_eq!(a.iter().filter(|b| b.never_valid()).count(), 2);
        assert_eq!(a.iter().filter(|b| **b == Behaviour::Honest).count(), 6);
    }

    #[test]
    fn bad_sections_are_refused() {
        let mut c = config();
        c.model = "nope".into();
        assert!(c.validate(10).unwrap_err().to_string().contains("built-in"));
        let mut c = config();
        c.byzantine.noise = 6;
        assert!(
            c.validate(10)
                .unwrap_err()
                .to_string()
                .contains("no honest")
        );
        let mut c = config();
        c.creator = 10;
        assert!(c.validate(10).is_err());
        let mut c = config();
        c.batch_size = Some(0);
        assert!(
            c.validate(10)
                .unwrap_err()
                .to_string()
                .contains("batch_size")
        );
        let mut c = config();
        c.learning_rate = Some(f64::NAN);
        assert!(
            c.validate(10)
                .unwrap_err()
                .to_string()
                .contains("learning_rate")
        );
    }
}
