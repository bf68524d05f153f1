//! `mc-learn bench federated`: does federated learning pay off on
//! non-IID operations data, and does it survive Byzantine participants?
//!
//! # What it measures
//!
//! A consortium of synthetic organisations ([`data::consortium`]: the
//! `mc_learn_core::synth` generator, small, medium and large members with
//! different load, provisioning and workload) each split their rows by
//! time, the earliest 80 % to train and the latest 20 % held out. One model
//! schema (by default the built-in `latency` model) is trained four ways and
//! scored on every organisation's held-out rows:
//!
//! 1. **local-only** ([`baseline::local_only`]): each organisation alone,
//!    as custom training does it (own normaliser, the default
//!    [`TrainConfig`]) but without the 1,000-row floor;
//! 2. **central** ([`baseline::central`]): one model on all training rows
//!    pooled, the upper bound federation aims at;
//! 3. **federated** ([`campaign::run`]): the campaign the node runs, in one
//!    process: signed moments round, pooled normaliser, seeded initial
//!    weights, then rounds of local updates signed with each participant's
//!    ed25519 key, verified by a round [`Collector`](mc_learn_core::round::Collector)
//!    and aggregated with the campaign's rule; the verify and aggregate
//!    times of every round are recorded;
//! 4. **personalised** ([`baseline::personalised`]): the federated model
//!    fine-tuned by each organisation on its own training rows, its last
//!    [`Options::personalise_layers`] layers (by default all) retrained at
//!    a low learning rate, exactly as `mc-node learn transfer` does with the
//!    campaign's model (nothing leaves the organisation);
//! 5. **Byzantine**: the same campaign with a fraction of the participants
//!    corrupting their updates ([`campaign::Attack`]: sign-flip and 10×
//!    scaling), under FedAvg, median, trimmed mean and Multi-Krum, scored on
//!    the honest organisations against the clean run with the same rule.
//!
//! [`targets::check`] turns the figures into the acceptance criteria of the
//! federated-learning issue; [`render`] prints them as a table.
//!
//! # Determinism
//!
//! Everything random is drawn from `Options::seed`. On the CPU the same
//! options give the same figures (wall times aside), whatever `jobs` is and
//! whatever the order in which updates reach the collector.
//!
//! # Layout
//!
//! - [`data`]: the organisations and their time split; who is Byzantine.
//! - [`baseline`]: local-only and central models, and [`baseline::Score`].
//! - [`campaign`]: the in-process campaign, its [`campaign::Settings`],
//!   attacks and per-round figures.
//! - [`byzantine`]: the runs with attackers, per rule.
//! - [`targets`]: the acceptance checks.
//! - [`render`]: the text report.

pub mod baseline;
pub mod byzantine;
pub mod campaign;
pub mod data;
pub mod render;
pub mod targets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use mc_learn_core::aggregate::{AggregateError, Rule};
use mc_learn_core::init::Init;
use mc_learn_core::round::ConfigError;
use mc_learn_core::synth::SynthError;
use mc_learn_core::table::SelectError;
use mc_learn_core::update::UpdateError;
use mc_learn_core::{ModelSchema, model_hash, schema};
use serde::Serialize;
use tch::Device;

use crate::custom::CustomError;
use crate::transfer::TransferError;
use crate::{FileError, Model, ModelError, TrainConfig};
use baseline::Score;
use byzantine::byzantine_runs;
pub use byzantine::{ByzantineReport, RuleRobustness, RunSummary};
use campaign::{Attack, OfferOrder, RoundStats};

/// A campaign's default batch size ([`mc_learn_core::plan`]).
pub const CAMPAIGN_BATCH: usize = mc_learn_core::plan::DEFAULT_BATCH_SIZE as usize;
/// A campaign's default round-1 learning rate ([`mc_learn_core::plan`]).
pub const CAMPAIGN_LR: f64 = mc_learn_core::plan::DEFAULT_LEARNING_RATE;
/// The node's default bound on `‖update − base‖₂`.
pub const DEFAULT_MAX_UPDATE_NORM: f64 = 1_000.0;

/// Layers the benchmark's organisations retrain when personalising: all
/// three of a built-in model's, at [`transfer`](crate::transfer)'s low
/// fine-tuning rate. On seed 1 (global model: mean held-out MAE 8.95;
/// central 5.99), the last two layers at the from-scratch rate 10⁻³ for 40
/// epochs gave 6.52, the last one for 80 epochs 6.73; all three at that
/// rate 6.46, at 5·10⁻⁴ 6.32, at 2·10⁻⁴ for 80 epochs (the defaults) 6.03
/// (more in [`crate::transfer::DEFAULT_FINE_TUNE_LEARNING_RATE`]).
pub const DEFAULT_PERSONALISE_LAYERS: usize = 3;

/// Settings of [`federated`].
#[derive(Clone, Debug, Serialize)]
pub struct Options {
    /// A built-in model (`latency`, `error_rate`, `memory`).
    pub model: String,
    /// Organisations in the consortium.
    pub orgs: usize,
    /// Seeds the data, the keys, the initial weights and all training.
    pub seed: u64,
    /// Keep only each organisation's earliest rows (quick runs).
    pub max_rows: Option<usize>,
    /// Fraction of each organisation's rows, the earliest, used to train.
    pub train_fraction: f64,
    /// Federated model rounds (after the moments round).
    pub rounds: u32,
    /// Local epochs per federated round.
    pub local_epochs: u32,
    /// Local batch size in federated rounds.
    pub batch_size: usize,
    /// Local learning rate in federated rounds.
    pub learning_rate: f64,
    /// Epochs of the local-only and central models.
    pub baseline_epochs: usize,
    /// Layers, the last ones, each organisation retrains when personalising
    /// the federated model; 0 skips personalisation.
    pub personalise_layers: usize,
    /// Epochs of personalising.
    pub personalise_epochs: usize,
    /// Adam's learning rate when personalising.
    pub personalise_learning_rate: f64,
    /// Aggregation rule of the federated run.
    pub rule: Rule,
    /// Correct client drift with control variates in every federated run;
    /// `None` for each rule's campaign default
    /// ([`mc_learn_core::scaffold::default_for`]).
    pub drift_correction: Option<bool>,
    /// Byzantine participants skip the drift correction they are given
    /// ([`campaign::Settings::byzantine_skip_correction`]).
    pub byzantine_skip_correction: bool,
    /// The last round's learning rate as a fraction of round 1's (a
    /// campaign's `final_rate_fraction`).
    pub final_rate_fraction: f64,
    /// How the campaigns draw their initial weights.
    pub init: Init,
    /// Bound on `‖update − base‖₂`.
    pub max_update_norm: f64,
    /// Fraction of Byzantine participants; 0 skips the Byzantine runs.
    pub byzantine_fraction: f64,
    /// Write the campaign's global model to this file (safetensors).
    pub save_federated: Option<PathBuf>,
    /// Read the global model from this file instead of running the
    /// campaign: one [`Options::save_federated`] wrote for the same model,
    /// organisations, rows and seed, to try personalising settings in
    /// seconds. The Byzantine runs need the campaign, so
    /// [`Options::byzantine_fraction`] must be 0.
    pub federated_from: Option<PathBuf>,
    /// Names (`fedavg`, `median`, `trimmed-mean`, `multi-krum`) of the
    /// rules the Byzantine runs try; empty for all of
    /// [`Options::byzantine_rules`].
    pub byzantine_rule_names: Vec<String>,
    /// `s` of the sign-flip attack, `w' = b − s·(w − b)`.
    pub flip_scale: f32,
    /// `k` of the scaling attack, `w' = b + k·(w − b)`.
    pub scale_factor: f32,
    /// Order of the updates offered to each round's collector.
    pub offer_order: OfferOrder,
    /// Threads for the participants' local training.
    pub jobs: usize,
    /// Where models train.
    #[serde(serialize_with = "debug_string")]
    pub device: Device,
}

impl Default for Options {
    /// The figures of the issue: 20 organisations, seed 1, 60 rounds of a
    /// campaign's default local epochs (of the median member), batch and
    /// learning rate,
    /// FedAvg, 20 % Byzantine (sign-flip ×4, scaling ×10).
    fn default() -> Self {
        Self {
            model: "latency".into(),
            orgs: 20,
            seed: 1,
            max_rows: None,
            train_fraction: crate::custom::DEFAULT_TRAIN_FRACTION,
            rounds: 60,
            local_epochs: mc_learn_core::plan::DEFAULT_LOCAL_EPOCHS,
            batch_size: CAMPAIGN_BATCH,
            learning_rate: CAMPAIGN_LR,
            baseline_epochs: TrainConfig::default().epochs,
            personalise_layers: DEFAULT_PERSONALISE_LAYERS,
            personalise_epochs: crate::transfer::DEFAULT_FINE_TUNE_EPOCHS,
            personalise_learning_rate: crate::transfer::DEFAULT_FINE_TUNE_LEARNING_RATE,
            rule: Rule::FedAvg,
            drift_correction: None,
            byzantine_skip_correction: false,
            final_rate_fraction: mc_learn_core::plan::DEFAULT_FINAL_RATE_FRACTION,
            init: mc_learn_core::init::DEFAULT_INIT,
            max_update_norm: DEFAULT_MAX_UPDATE_NORM,
            byzantine_fraction: 0.2,
            save_federated: None,
            federated_from: None,
            byzantine_rule_names: Vec::new(),
            flip_scale: 4.0,
            scale_factor: 10.0,
            offer_order: OfferOrder::Forward,
            jobs: 1,
            device: crate::default_device(),
        }
    }
}

impl Options {
    /// The two attacks of the Byzantine runs.
    pub fn attacks(&self) -> [Attack; 2] {
        [
            Attack::SignFlip {
                scale: self.flip_scale,
            },
            Attack::Scale {
                factor: self.scale_factor,
            },
        ]
    }

    /// The rules of the Byzantine runs, for `byzantine` attackers among
    /// `orgs`: FedAvg, median, trimmed mean dropping 20 % at each side,
    /// and Multi-Krum tolerating `f = byzantine` and averaging the
    /// `n − byzantine` best; only those named in
    /// [`Options::byzantine_rule_names`] when it names any.
    pub fn byzantine_rules(&self, byzantine: usize) -> Vec<Rule> {
        let chosen = |rule: &Rule| {
            self.byzantine_rule_names.is_empty()
                || self.byzantine_rule_names.contains(&rule_name(*rule))
        };
        let all = [
            Rule::FedAvg,
            Rule::Median,
            Rule::TrimmedMean { trim: 0.2 },
            Rule::MultiKrum {
                f: byzantine,
                m: self.orgs.saturating_sub(byzantine).max(1),
            },
        ];
        all.into_iter().filter(chosen).collect()
    }

    /// The campaign settings of a run under `rule` (`track`: score the
    /// model on held-out rows after every round).
    pub fn campaign(&self, rule: Rule, track: bool) -> campaign::Settings {
        campaign::Settings {
            rounds: self.rounds,
            local_epochs: self.local_epochs,
            train: TrainConfig {
                batch_size: self.batch_size,
                learning_rate: self.learning_rate,
                device: self.device,
                ..TrainConfig::default()
            },
            rule,
            drift_correction: self
                .drift_correction
                .unwrap_or(mc_learn_core::scaffold::default_for(rule)),
            byzantine_skip_correction: self.byzantine_skip_correction,
            final_rate_fraction: self.final_rate_fraction,
            max_update_norm: self.max_update_norm,
            seed: self.seed,
            init: self.init,
            offer_order: self.offer_order,
            jobs: self.jobs,
            track,
        }
    }

    fn baseline(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.baseline_epochs,
            seed: self.seed,
            device: self.device,
            ..TrainConfig::default()
        }
    }
}

fn debug_string<S: serde::Serializer>(d: &Device, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{d:?}"))
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The model is not a built-in schema.
    #[error("no built-in model {0:?} (try latency, error_rate or memory)")]
    UnknownModel(String),
    /// The consortium has no organisation.
    #[error("the consortium needs at least one organisation")]
    NoOrgs,
    /// An option is out of range.
    #[error("bad options: {0}")]
    BadOptions(&'static str),
    /// Personalising would retrain more layers than the model has.
    #[error("cannot personalise the last {asked} layers of a model with {layers}")]
    BadPersonalisation {
        /// Layers asked for.
        asked: usize,
        /// Layers the model has.
        layers: usize,
    },
    /// An organisation's split leaves no training or no test rows.
    #[error("{org}: {rows} rows leave no training or no test rows")]
    EmptySplit {
        /// The organisation.
        org: String,
        /// Its rows.
        rows: usize,
    },
    /// The synthetic generator refused a profile.
    #[error(transparent)]
    Synth(#[from] SynthError),
    /// The generated table lacks the model's columns.
    #[error(transparent)]
    Select(#[from] SelectError),
    /// Building, training or scoring a model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The global model could not be written to or read from its file.
    #[error(transparent)]
    ModelFile(#[from] FileError),
    /// Local-only (custom) training failed.
    #[error(transparent)]
    Custom(#[from] CustomError),
    /// Personalising (transfer learning) failed.
    #[error(transparent)]
    Transfer(#[from] TransferError),
    /// An update could not be signed.
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// A round's collector could not be built.
    #[error(transparent)]
    Round(#[from] ConfigError),
    /// The campaign could not open a round.
    #[error(transparent)]
    Campaign(#[from] mc_learn_core::campaign::CampaignError),
    /// A round could not be aggregated.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// Control variates could not be updated.
    #[error(transparent)]
    Drift(#[from] mc_learn_core::scaffold::DriftError),
    /// The pooled moments make no normaliser.
    #[error("pooled moments: {0}")]
    Moments(String),
}

/// One organisation's figures.
#[derive(Clone, Debug, Serialize)]
pub struct OrgReport {
    /// Its name.
    pub name: String,
    /// Rows before the split.
    pub rows: usize,
    /// Training rows.
    pub train_rows: usize,
    /// Held-out rows, what the scores are on.
    pub test_rows: usize,
    /// Whether it is a Byzantine participant in the Byzantine runs.
    pub byzantine: bool,
    /// Its own model.
    pub local: Score,
    /// The model trained on everyone's pooled rows.
    pub central: Score,
    /// The federated model.
    pub federated: Score,
    /// The federated model personalised on the organisation's own rows
    /// (absent when [`Options::personalise_layers`] is 0).
    pub personalised: Option<Score>,
}

/// The federated run.
#[derive(Clone, Debug, Serialize)]
pub struct FederatedReport {
    /// Its rule.
    pub rule: Rule,
    /// Hash of the final model (hex).
    pub model_hash: String,
    /// Per model round: updates accepted and refused, train, verify and
    /// aggregate times.
    pub rounds: Vec<RoundStats>,
    /// Updates refused, by reason.
    pub rejections: BTreeMap<String, u64>,
}

/// Wall time of each phase, seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WallTimes {
    /// Generating and splitting the data.
    pub data: f64,
    /// Local-only models.
    pub local_only: f64,
    /// The central model.
    pub central: f64,
    /// The federated run.
    pub federated: f64,
    /// Personalising the federated model.
    pub personalised: f64,
    /// The Byzantine runs.
    pub byzantine: f64,
    /// Everything.
    pub total: f64,
}

/// Everything [`federated`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The options it ran with.
    pub options: Options,
    /// Model parameters.
    pub num_params: usize,
    /// Per organisation.
    pub orgs: Vec<OrgReport>,
    /// The federated run.
    pub federated: FederatedReport,
    /// The Byzantine runs (absent when the fraction gives no attacker).
    pub byzantine: Option<ByzantineReport>,
    /// The acceptance criteria.
    pub checks: Vec<targets::Check>,
    /// Wall times.
    pub wall_s: WallTimes,
}

/// Runs the whole benchmark; `progress` hears what it is doing (it takes
/// minutes at full size).
pub fn federated(opts: &Options, progress: &mut dyn FnMut(&str)) -> Result<Report, BenchError> {
    if opts.orgs == 0 {
        return Err(BenchError::NoOrgs);
    }
    if !(opts.train_fraction > 0.0 && opts.train_fraction < 1.0) {
        return Err(BenchError::BadOptions("train_fraction must be in (0, 1)"));
    }
    if opts.rounds == 0 || opts.local_epochs == 0 {
        return Err(BenchError::BadOptions(
            "rounds and local epochs must be positive",
        ));
    }
    let schema = schema::builtin_named(&opts.model)
        .filter(|s| s.task == mc_learn_core::Task::Regression)
        .ok_or_else(|| BenchError::UnknownModel(opts.model.clone()))?;
    let layers = schema.layer_sizes().len() - 1;
    if opts.personalise_layers > layers {
        return Err(BenchError::BadPersonalisation {
            asked: opts.personalise_layers,
            layers,
        });
    }
    if opts.federated_from.is_some() && opts.save_federated.is_some() {
        return Err(BenchError::BadOptions(
            "read the global model from a file or save the campaign's, not both",
        ));
    }
    if opts.federated_from.is_some() && opts.byzantine_fraction > 0.0 {
        return Err(BenchError::BadOptions(
            "a global model read from a file needs byzantine_fraction 0: \
             the Byzantine runs start from the campaign",
        ));
    }
    let rate = opts.personalise_learning_rate;
    if opts.personalise_layers > 0 && !(rate.is_finite() && rate > 0.0) {
        return Err(BenchError::BadOptions(
            "the personalising learning rate must be positive",
        ));
    }
    // Wall times are measurements reported to people, nothing more.
    let started = Instant::now();
    let mut wall = WallTimes::default();
    let mut phase = Instant::now();

    progress(&format!(
        "data: {} organisations, seed {}, model {} ({} parameters)",
        opts.orgs,
        opts.seed,
        schema.name,
        schema.num_params()
    ));
    let orgs = data::consortium(
        &schema,
        opts.orgs,
        opts.seed,
        opts.max_rows,
        opts.train_fraction,
    )?;
    let byzantine = data::byzantine_indices(orgs.len(), opts.byzantine_fraction);
    wall.data = lap(&mut phase);

    progress(&format!(
        "local-only: {} epochs per organisation",
        opts.baseline_epochs
    ));
    let local = baseline::local_only(&schema, &orgs, &opts.baseline(), progress)?;
    wall.local_only = lap(&mut phase);

    progress(&format!(
        "central: {} epochs on {} pooled rows",
        opts.baseline_epochs,
        orgs.iter().map(|o| o.train.len()).sum::<usize>()
    ));
    let central = baseline::central(&schema, &orgs, &opts.baseline())?;
    wall.central = lap(&mut phase);

    let (federated_model, federated, run) = match &opts.federated_from {
        Some(path) => {
            progress(&format!(
                "federated: the global model read from {} (no campaign run)",
                path.display()
            ));
            let model = Model::load(&schema, path, opts.device)?;
            let federated = FederatedReport {
                rule: opts.rule,
                model_hash: model_hash(&model.flat_weights()).to_string(),
                rounds: Vec::new(),
                rejections: BTreeMap::new(),
            };
            (model, federated, None)
        }
        None => {
            progress(&format!(
                "federated: {}, {} rounds × {} local epochs, drift correction {}",
                opts.rule,
                opts.rounds,
                opts.local_epochs,
                on_off(opts.drift_correction, opts.rule)
            ));
            let run = campaign::run(
                &schema,
                &orgs,
                &opts.campaign(opts.rule, true),
                None,
                progress,
            )?;
            let model = model_of(&schema, &run, opts.device)?;
            if let Some(path) = &opts.save_federated {
                model.save(path)?;
                progress(&format!(
                    "federated: global model written to {}",
                    path.display()
                ));
            }
            let federated = FederatedReport {
                rule: opts.rule,
                model_hash: run.model_hash.clone(),
                rounds: run.rounds.clone(),
                rejections: run.rejections.clone(),
            };
            (model, federated, Some(run))
        }
    };
    let federated_scores = baseline::score_all(&federated_model, &orgs)?;
    wall.federated = lap(&mut phase);

    let personalised = if opts.personalise_layers == 0 {
        None
    } else {
        progress(&format!(
            "personalised: every organisation retrains the federated model's last {} layers \
             for {} epochs at learning rate {}",
            opts.personalise_layers, opts.personalise_epochs, opts.personalise_learning_rate
        ));
        Some(baseline::personalised(
            &federated_model,
            &orgs,
            opts.personalise_layers,
            &crate::transfer::Options {
                train: opts.baseline(),
                fine_tune_learning_rate: opts.personalise_learning_rate,
                fine_tune_epochs: opts.personalise_epochs,
                train_fraction: opts.train_fraction,
            },
            progress,
        )?)
    };
    wall.personalised = lap(&mut phase);

    // `run` is absent only for a model read from a file, which the
    // options check above allows only without Byzantine participants.
    let byzantine_report = match &run {
        Some(run) if !byzantine.is_empty() => Some(byzantine_runs(
            &schema, &orgs, &byzantine, opts, run, progress,
        )?),
        _ => None,
    };
    wall.byzantine = lap(&mut phase);

    let org_reports: Vec<OrgReport> = orgs
        .iter()
        .enumerate()
        .map(|(i, org)| OrgReport {
            name: org.name.clone(),
            rows: org.rows,
            train_rows: org.train.len(),
            test_rows: org.test.len(),
            byzantine: byzantine.contains(&i),
            local: local[i],
            central: central[i],
            federated: federated_scores[i],
            personalised: personalised.as_ref().map(|p| p[i]),
        })
        .collect();
    let checks = targets::check(&org_reports, byzantine_report.as_ref());
    wall.total = started.elapsed().as_secs_f64();
    Ok(Report {
        options: opts.clone(),
        num_params: schema.num_params(),
        orgs: org_reports,
        federated,
        byzantine: byzantine_report,
        checks,
        wall_s: wall,
    })
}

/// A rule's name without its parameters (`median`, `multi-krum`, …).
pub(crate) fn rule_name(rule: Rule) -> String {
    let text = rule.to_string();
    match text.split_once(':') {
        Some((name, _)) => name.to_owned(),
        None => text,
    }
}

/// The global model of a finished campaign.
pub fn model_of(
    schema: &ModelSchema,
    run: &campaign::Run,
    device: Device,
) -> Result<Model, BenchError> {
    Ok(Model::from_flat(
        schema,
        run.normaliser.clone(),
        &run.weights,
        device,
    )?)
}

/// Seconds since `phase`, which restarts.
fn lap(phase: &mut Instant) -> f64 {
    let s = phase.elapsed().as_secs_f64();
    *phase = Instant::now();
    s
}

/// How a report names the drift-correction setting of `rule`'s runs.
fn on_off(drift_correction: Option<bool>, rule: Rule) -> &'static str {
    match drift_correction {
        Some(true) => "on",
        Some(false) => "off",
        None if mc_learn_core::scaffold::default_for(rule) => "on (the rule's default)",
        None => "off (the rule's default)",
    }
}
