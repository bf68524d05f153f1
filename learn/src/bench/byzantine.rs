//! The Byzantine runs of `mc-learn bench federated`: every rule of
//! [`Options::byzantine_rules`] clean, with the attackers absent, and under
//! every attack, scored on the honest organisations only.

use mc_learn_core::ModelSchema;
use mc_learn_core::aggregate::{AggregateError, Rule};
use serde::Serialize;
use std::collections::BTreeMap;

use super::baseline::{self, Score};
use super::campaign::{self, Attack};
use super::data::Org;
use super::{BenchError, Options, model_of};

/// Mean and minimum of a model's scores over a set of organisations.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Mean R².
    pub mean_r2: f64,
    /// Lowest R².
    pub min_r2: f64,
    /// Mean MAE.
    pub mean_mae: f64,
    /// Hash of the final model (hex).
    pub model_hash: String,
    /// Updates refused, by reason.
    pub rejections: BTreeMap<String, u64>,
    /// Corrupted updates offered.
    pub byzantine_offered: u64,
    /// Corrupted updates accepted.
    pub byzantine_accepted: u64,
}

/// One rule, clean and under each attack.
#[derive(Clone, Debug, Serialize)]
pub struct RuleRobustness {
    /// The rule.
    pub rule: Rule,
    /// No attacker (the Byzantine participants train honestly).
    pub clean: RunSummary,
    /// The honest participants alone, the Byzantine ones absent (robust
    /// rules only): the best a rule can do once it has discarded the
    /// attackers, whose rows it then cannot learn from either.
    pub absent: Option<RunSummary>,
    /// Under each attack, in [`Options::attacks`] order.
    pub attacked: Vec<(Attack, RunSummary)>,
}

/// The Byzantine runs, scored on the honest organisations only.
#[derive(Clone, Debug, Serialize)]
pub struct ByzantineReport {
    /// The Byzantine participants.
    pub participants: Vec<String>,
    /// One entry per rule.
    pub rules: Vec<RuleRobustness>,
}

/// Every rule of [`Options::byzantine_rules`], clean and under every attack.
pub(super) fn byzantine_runs(
    schema: &ModelSchema,
    orgs: &[Org],
    byzantine: &[usize],
    opts: &Options,
    main: &campaign::Run,
    progress: &mut dyn FnMut(&str),
) -> Result<ByzantineReport, BenchError> {
    let honest: Vec<Org> = orgs
        .iter()
        .enumerate()
        .filter(|(i, _)| !byzantine.contains(i))
        .map(|(_, o)| o.clone())
        .collect();
    let summarise = |run: &campaign::Run| -> Result<RunSummary, BenchError> {
        let scores = baseline::score_all(&model_of(schema, run, opts.device)?, &honest)?;
        Ok(summary(&scores, run))
    };
    let names: Vec<String> = byzantine.iter().map(|&i| orgs[i].name.clone()).collect();
    let mut rules = Vec::new();
    for rule in opts.byzantine_rules(byzantine.len()) {
        // The federated run is this rule's clean run when the rules agree.
        let clean = if rule == opts.rule {
            summarise(main)?
        } else {
            progress(&format!("byzantine: {rule}, clean"));
            summarise(&campaign::run(
                schema,
                orgs,
                &opts.campaign(rule, false),
                None,
                progress,
            )?)?
        };
        progress(&format!(
            "byzantine: {rule}, clean: honest mean R² {:.4}, min {:.4}",
            clean.mean_r2, clean.min_r2
        ));
        let absent = if rule == Rule::FedAvg {
            None
        } else {
            progress(&format!("byzantine: {rule}, without {}", names.join(", ")));
            match campaign::run(schema, &honest, &opts.campaign(rule, false), None, progress) {
                Ok(run) => {
                    let s = summarise(&run)?;
                    progress(&format!(
                        "byzantine: {rule}, without them: honest mean R² {:.4}, min {:.4}",
                        s.mean_r2, s.min_r2
                    ));
                    Some(s)
                }
                // Multi-Krum needs f + 3 updates; the honest ones alone
                // may be fewer.
                Err(BenchError::Aggregate(AggregateError::TooFewUpdates {
                    needed, got, ..
                })) => {
                    progress(&format!(
                        "byzantine: {rule}, without them: not run ({got} participants, the rule needs {needed})"
                    ));
                    None
                }
                Err(e) => return Err(e),
            }
        };
        let mut attacked = Vec::new();
        for attack in opts.attacks() {
            progress(&format!(
                "byzantine: {rule}, {} by {}",
                attack.label(),
                names.join(", ")
            ));
            let run = campaign::run(
                schema,
                orgs,
                &opts.campaign(rule, false),
                Some((attack, byzantine)),
                progress,
            )?;
            let s = summarise(&run)?;
            progress(&format!(
                "byzantine: {rule}, {}: honest mean R² {:.4} (clean {:.4}), min {:.4}; {} of {} corrupted updates accepted",
                attack.label(),
                s.mean_r2,
                clean.mean_r2,
                s.min_r2,
                s.byzantine_accepted,
                s.byzantine_offered
            ));
            attacked.push((attack, s));
        }
        rules.push(RuleRobustness {
            rule,
            clean,
            absent,
            attacked,
        });
    }
    Ok(ByzantineReport {
        participants: names,
        rules,
    })
}

pub(super) fn summary(scores: &[Score], run: &campaign::Run) -> RunSummary {
    let n = scores.len().max(1) as f64;
    RunSummary {
        mean_r2: scores.iter().map(|s| s.r2).sum::<f64>() / n,
        min_r2: scores.iter().map(|s| s.r2).fold(f64::INFINITY, f64::min),
        mean_mae: scores.iter().map(|s| s.mae).sum::<f64>() / n,
        model_hash: run.model_hash.clone(),
        rejections: run.rejections.clone(),
        byzantine_offered: run.byzantine_offered,
        byzantine_accepted: run.byzantine_accepted,
    }
}
