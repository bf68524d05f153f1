//! The acceptance criteria of the federated-learning issue, as checks on a
//! [`Report`](super::Report)'s figures.
//!
//! - **(a)** the federated model has R² ≥ 0.85 on every organisation's
//!   held-out rows;
//! - **(b)** for every organisation with at most 1,000 rows (before the
//!   split), the federated model's MAE is at least 20 % below its
//!   local-only model's (where it is not, the detail gives central's gain
//!   for comparison);
//! - **(c)** federated is within 5 % of central, one-sided (federated may
//!   be better): (c1) mean R² over organisations at least 95 % of
//!   central's, (c2) mean MAE at most 5 % above central's;
//! - **(a)–(c), personalised**: the same three for the federated model
//!   each organisation fine-tuned on its own rows (ids `a-personalised`,
//!   …), when the report has it. A personalised model is what a member
//!   would deploy (`mc-node learn transfer` from the campaign's model); the
//!   global model's own checks stay, so the report says which of the two
//!   meets what;
//! - **(d)** with the Byzantine participants attacking, each robust rule's
//!   mean R² over the honest organisations stays within 0.02 of the same
//!   rule's clean run, under every attack, in either direction (an attacked
//!   run far *better* than the clean one shows run-to-run noise, not
//!   robustness); and plain FedAvg degrades
//!   visibly, which we take to mean a drop of at least 0.1 (five times the
//!   tolerance) under every attack;
//! - **(d, against the attackers' absence)** the same tolerance, measured
//!   against the same rule's run with the Byzantine participants left out
//!   altogether: a rule that discards the attackers also loses their honest
//!   rows, which the comparison with the clean run counts as damage.

use mc_learn_core::aggregate::Rule;
use serde::Serialize;

use super::{ByzantineReport, OrgReport, RuleRobustness, Score, rule_name};

/// R² the federated model must reach on every organisation.
pub const MIN_R2: f64 = 0.85;
/// Organisations with at most this many rows must gain from federation.
pub const SMALL_ORG_ROWS: usize = 1_000;
/// Their MAE must fall by at least this fraction.
pub const MIN_MAE_GAIN: f64 = 0.20;
/// Federated may trail central by at most this fraction.
pub const CENTRAL_TOLERANCE: f64 = 0.05;
/// A robust rule may lose at most this much mean R² under attack.
pub const ROBUST_TOLERANCE: f64 = 0.02;
/// FedAvg "degrades visibly" when it loses at least this much mean R².
pub const VISIBLE_DROP: f64 = 0.10;

/// One criterion and whether the figures meet it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Check {
    /// `a`, `b`, `c1`, `c2`, `d-median`, …
    pub id: String,
    /// The criterion in words.
    pub criterion: String,
    /// Whether it is met.
    pub passed: bool,
    /// The figures behind the verdict.
    pub detail: String,
}

/// Which federated model a check scores: the campaign's global model, or
/// that model personalised on each organisation's own rows.
#[derive(Clone, Copy)]
struct Model {
    /// Appended to the check ids: `""` or `"-personalised"`.
    suffix: &'static str,
    /// How the criteria name the model.
    label: &'static str,
    /// The model's score on an organisation, if it was measured.
    score: fn(&OrgReport) -> Option<Score>,
}

const GLOBAL: Model = Model {
    suffix: "",
    label: "federated",
    score: |o| Some(o.federated),
};

const PERSONALISED: Model = Model {
    suffix: "-personalised",
    label: "personalised federated",
    score: |o| o.personalised,
};

/// Every criterion on these figures: (a)–(c) for the global model, and
/// again for the personalised one when every organisation has its score.
pub fn check(orgs: &[OrgReport], byzantine: Option<&ByzantineReport>) -> Vec<Check> {
    let mut checks = Vec::new();
    for model in [GLOBAL, PERSONALISED] {
        let Some(scores) = orgs.iter().map(model.score).collect::<Option<Vec<Score>>>() else {
            continue;
        };
        checks.push(every_org_r2(model, orgs, &scores));
        checks.push(small_orgs_gain(model, orgs, &scores));
        checks.extend(close_to_central(model, orgs, &scores));
    }
    if let Some(b) = byzantine {
        checks.extend(robustness(b));
    }
    checks
}

fn every_org_r2(model: Model, orgs: &[OrgReport], scores: &[Score]) -> Check {
    let below: Vec<String> = orgs
        .iter()
        .zip(scores)
        .filter(|(_, s)| s.r2.is_nan() || s.r2 < MIN_R2)
        .map(|(o, s)| format!("{} {:.3}", o.name, s.r2))
        .collect();
    let worst = orgs
        .iter()
        .zip(scores)
        .min_by(|(_, a), (_, b)| a.r2.total_cmp(&b.r2));
    Check {
        id: format!("a{}", model.suffix),
        criterion: format!(
            "{} R² ≥ {MIN_R2} on every organisation's held-out rows",
            model.label
        ),
        passed: below.is_empty() && !orgs.is_empty(),
        detail: match (below.is_empty(), worst) {
            (true, Some((o, s))) => format!("lowest {:.3} ({})", s.r2, o.name),
            (false, _) => format!("{} below: {}", below.len(), below.join(", ")),
            (true, None) => "no organisation".into(),
        },
    }
}

/// (b), with central's gain beside every organisation that misses it: where
/// central misses it too, the organisation's own model was already about as
/// good as pooling everyone's rows makes it.
fn small_orgs_gain(model: Model, orgs: &[OrgReport], scores: &[Score]) -> Check {
    let gains: Vec<(String, f64, f64)> = orgs
        .iter()
        .zip(scores)
        .filter(|(o, _)| o.rows <= SMALL_ORG_ROWS)
        .map(|(o, s)| {
            let gain = |mae: f64| 1.0 - mae / o.local.mae;
            (o.name.clone(), gain(s.mae), gain(o.central.mae))
        })
        .collect();
    let passed = gains.iter().all(|(_, g, _)| *g >= MIN_MAE_GAIN);
    Check {
        id: format!("b{}", model.suffix),
        criterion: format!(
            "{} MAE ≥ {:.0} % below local-only for organisations with ≤ {SMALL_ORG_ROWS} rows",
            model.label,
            MIN_MAE_GAIN * 100.0
        ),
        passed,
        detail: if gains.is_empty() {
            "no organisation that small (vacuous)".into()
        } else {
            let changes: Vec<String> = gains
                .iter()
                .map(|(name, g, central)| {
                    // `0.0 - g`, not `-g`: no gain prints as +0.0, not -0.0.
                    let change = format!("{name} {:+.1} %", (0.0 - g) * 100.0);
                    if *g >= MIN_MAE_GAIN {
                        change
                    } else {
                        format!("{change} (central {:+.1} %)", (0.0 - central) * 100.0)
                    }
                })
                .collect();
            format!("MAE change vs local-only: {}", changes.join(", "))
        },
    }
}

fn close_to_central(model: Model, orgs: &[OrgReport], scores: &[Score]) -> [Check; 2] {
    let n = orgs.len().max(1) as f64;
    let mean = |v: &mut dyn Iterator<Item = f64>| v.sum::<f64>() / n;
    let fed_r2 = mean(&mut scores.iter().map(|s| s.r2));
    let fed_mae = mean(&mut scores.iter().map(|s| s.mae));
    let central_r2 = mean(&mut orgs.iter().map(|o| o.central.r2));
    let central_mae = mean(&mut orgs.iter().map(|o| o.central.mae));
    let r2_gap = (central_r2 - fed_r2) / central_r2.abs();
    let mae_gap = (fed_mae - central_mae) / central_mae;
    let label = model.label;
    [
        Check {
            id: format!("c1{}", model.suffix),
            criterion: format!(
                "{label} mean R² within {:.0} % of central's (relative, {label} may be better)",
                CENTRAL_TOLERANCE * 100.0
            ),
            passed: r2_gap <= CENTRAL_TOLERANCE,
            detail: format!(
                "{label} {fed_r2:.4}, central {central_r2:.4}: {label} {} by {:.2} %",
                if r2_gap > 0.0 { "behind" } else { "ahead" },
                r2_gap.abs() * 100.0
            ),
        },
        Check {
            id: format!("c2{}", model.suffix),
            criterion: format!(
                "{label} mean MAE within {:.0} % of central's ({label} may be better)",
                CENTRAL_TOLERANCE * 100.0
            ),
            passed: mae_gap <= CENTRAL_TOLERANCE,
            detail: format!(
                "{label} {fed_mae:.2}, central {central_mae:.2}: {label} {} by {:.2} %",
                if mae_gap > 0.0 { "worse" } else { "better" },
                mae_gap.abs() * 100.0
            ),
        },
    ]
}

/// `+0.1234`, or `+1.25e5` for the figures of a model that blew up.
pub(super) fn signed(v: f64) -> String {
    if v.abs() < 1e3 {
        format!("{v:+.4}")
    } else {
        format!("{v:+.2e}")
    }
}

/// Each attack's label and the mean honest R² it cost against `reference`.
fn drops(r: &RuleRobustness, reference: f64) -> Vec<(String, f64)> {
    r.attacked
        .iter()
        .map(|(attack, s)| (attack.label(), reference - s.mean_r2))
        .collect()
}

fn detail(drops: &[(String, f64)]) -> String {
    drops
        .iter()
        .map(|(label, d)| format!("{label}: drop {}", signed(*d)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Within the tolerance either way; NaN fails.
fn within_tolerance(drops: &[(String, f64)]) -> bool {
    drops.iter().all(|(_, d)| d.abs() <= ROBUST_TOLERANCE)
}

fn robustness(b: &ByzantineReport) -> Vec<Check> {
    let mut checks: Vec<Check> = b
        .rules
        .iter()
        .map(|r| {
            let drops = drops(r, r.clean.mean_r2);
            if r.rule == Rule::FedAvg {
                Check {
                    id: "d-fedavg".into(),
                    criterion: format!(
                        "plain FedAvg degrades visibly under attack (mean honest R² drop ≥ {VISIBLE_DROP})"
                    ),
                    // A NaN (a model that blew up) counts as degraded.
                    passed: drops.iter().all(|(_, d)| d.is_nan() || *d >= VISIBLE_DROP),
                    detail: detail(&drops),
                }
            } else {
                Check {
                    id: format!("d-{}", rule_name(r.rule)),
                    criterion: format!(
                        "{} stays within {ROBUST_TOLERANCE} mean honest R² of its clean run under attack",
                        r.rule
                    ),
                    passed: within_tolerance(&drops),
                    detail: detail(&drops),
                }
            }
        })
        .collect();
    checks.extend(b.rules.iter().filter_map(|r| {
        let drops = drops(r, r.absent.as_ref()?.mean_r2);
        Some(Check {
            id: format!("d-{}-vs-absent", rule_name(r.rule)),
            criterion: format!(
                "{} stays within {ROBUST_TOLERANCE} mean honest R² of the run without the Byzantine participants under attack",
                r.rule
            ),
            passed: within_tolerance(&drops),
            detail: detail(&drops),
        })
    }));
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::RunSummary;
    use crate::bench::campaign::Attack;

    fn run(mean_r2: f64) -> RunSummary {
        RunSummary {
            mean_r2,
            min_r2: mean_r2,
            mean_mae: 1.0,
            model_hash: String::new(),
            rejections: Default::default(),
            byzantine_offered: 0,
            byzantine_accepted: 0,
        }
    }

    fn org(name: &str, rows: usize, local: f64, fed: f64, pers: Option<f64>) -> OrgReport {
        let score = |mae: f64| Score { r2: 0.9, mae };
        OrgReport {
            name: name.into(),
            rows,
            train_rows: rows * 4 / 5,
            test_rows: rows / 5,
            byzantine: false,
            local: score(local),
            central: score(10.0),
            federated: score(fed),
            personalised: pers.map(score),
        }
    }

    #[test]
    fn the_personalised_model_is_checked_apart_and_only_when_every_org_has_it() {
        // A small organisation the global model does not help (MAE 12
        // against 12 alone) and its personalised model does (9).
        let orgs = [
            org("org-00", 500, 12.0, 12.0, Some(9.0)),
            org("org-01", 5_000, 10.0, 10.0, Some(10.0)),
        ];
        let checks = check(&orgs, None);
        let by_id = |id: &str| checks.iter().find(|c| c.id == id).unwrap();
        assert!(!by_id("b").passed);
        assert!(
            by_id("b-personalised").passed,
            "{:?}",
            by_id("b-personalised")
        );
        assert!(by_id("b-personalised").detail.contains("org-00 -25.0 %"));
        // Central's MAE there is 10: it would have gained 16.7 %, short too.
        assert!(
            by_id("b")
                .detail
                .contains("org-00 +0.0 % (central -16.7 %)"),
            "{:?}",
            by_id("b")
        );
        assert!(!by_id("b-personalised").detail.contains("central"));
        // Mean MAE 11 against central's 10: 10 % worse; personalised 9.5.
        assert!(!by_id("c2").passed && by_id("c2-personalised").passed);
        assert_eq!(checks.len(), 8);

        let partial = [orgs[0].clone(), org("org-01", 5_000, 10.0, 10.0, None)];
        let ids: Vec<String> = check(&partial, None).into_iter().map(|c| c.id).collect();
        assert_eq!(ids, ["a", "b", "c1", "c2"]);
    }

    #[test]
    fn robust_rules_are_checked_against_the_clean_run_and_the_attackers_absence() {
        let attacked = |a: f64, b: f64| {
            vec![
                (Attack::SignFlip { scale: 4.0 }, run(a)),
                (Attack::Scale { factor: 10.0 }, run(b)),
            ]
        };
        let report = ByzantineReport {
            participants: vec!["org-04".into()],
            rules: vec![
                RuleRobustness {
                    rule: Rule::FedAvg,
                    clean: run(0.9),
                    absent: None,
                    attacked: attacked(-5.0, f64::NAN),
                },
                RuleRobustness {
                    rule: Rule::MultiKrum { f: 1, m: 3 },
                    // Losing the attackers' rows costs 0.05; their updates
                    // cost nothing more.
                    clean: run(0.95),
                    absent: Some(run(0.90)),
                    attacked: attacked(0.90, 0.91),
                },
            ],
        };
        let checks = robustness(&report);
        let by_id = |id: &str| checks.iter().find(|c| c.id == id).unwrap();
        assert!(by_id("d-fedavg").passed, "a NaN counts as degraded");
        assert!(!by_id("d-multi-krum").passed, "0.05 below the clean run");
        assert!(by_id("d-multi-krum-vs-absent").passed);
        assert_eq!(checks.len(), 3, "no absence check for FedAvg");
    }
}
