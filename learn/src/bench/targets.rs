//! The acceptance criteria of the federated-learning issue, as checks on a
//! [`Report`](super::Report)'s figures.
//!
//! - **(a)** the federated model has R² ≥ 0.85 on every organisation's
//!   held-out rows;
//! - **(b)** for every organisation with at most 1,000 rows (before the
//!   split), the federated model's MAE is at least 20 % below its
//!   local-only model's;
//! - **(c)** federated is within 5 % of central, one-sided (federated may
//!   be better): (c1) mean R² over organisations at least 95 % of
//!   central's, (c2) mean MAE at most 5 % above central's;
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

use super::{ByzantineReport, OrgReport, RuleRobustness, rule_name};

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

/// Every criterion on these figures.
pub fn check(orgs: &[OrgReport], byzantine: Option<&ByzantineReport>) -> Vec<Check> {
    let mut checks = vec![every_org_r2(orgs), small_orgs_gain(orgs)];
    checks.extend(close_to_central(orgs));
    if let Some(b) = byzantine {
        checks.extend(robustness(b));
    }
    checks
}

fn every_org_r2(orgs: &[OrgReport]) -> Check {
    let below: Vec<String> = orgs
        .iter()
        .filter(|o| o.federated.r2.is_nan() || o.federated.r2 < MIN_R2)
        .map(|o| format!("{} {:.3}", o.name, o.federated.r2))
        .collect();
    let worst = orgs
        .iter()
        .min_by(|a, b| a.federated.r2.total_cmp(&b.federated.r2));
    Check {
        id: "a".into(),
        criterion: format!("federated R² ≥ {MIN_R2} on every organisation's held-out rows"),
        passed: below.is_empty() && !orgs.is_empty(),
        detail: match (below.is_empty(), worst) {
            (true, Some(w)) => format!("lowest {:.3} ({})", w.federated.r2, w.name),
            (false, _) => format!("{} below: {}", below.len(), below.join(", ")),
            (true, None) => "no organisation".into(),
        },
    }
}

fn small_orgs_gain(orgs: &[OrgReport]) -> Check {
    let small: Vec<&OrgReport> = orgs.iter().filter(|o| o.rows <= SMALL_ORG_ROWS).collect();
    let gains: Vec<(String, f64)> = small
        .iter()
        .map(|o| (o.name.clone(), 1.0 - o.federated.mae / o.local.mae))
        .collect();
    let passed = gains.iter().all(|(_, g)| *g >= MIN_MAE_GAIN);
    Check {
        id: "b".into(),
        criterion: format!(
            "federated MAE ≥ {:.0} % below local-only for organisations with ≤ {SMALL_ORG_ROWS} rows",
            MIN_MAE_GAIN * 100.0
        ),
        passed,
        detail: if gains.is_empty() {
            "no organisation that small (vacuous)".into()
        } else {
            let changes: Vec<String> = gains
                .iter()
                .map(|(name, g)| format!("{name} {:+.1} %", -g * 100.0))
                .collect();
            format!("MAE change vs local-only: {}", changes.join(", "))
        },
    }
}

fn close_to_central(orgs: &[OrgReport]) -> [Check; 2] {
    let n = orgs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&OrgReport) -> f64| orgs.iter().map(f).sum::<f64>() / n;
    let (fed_r2, central_r2) = (mean(&|o| o.federated.r2), mean(&|o| o.central.r2));
    let (fed_mae, central_mae) = (mean(&|o| o.federated.mae), mean(&|o| o.central.mae));
    let r2_gap = (central_r2 - fed_r2) / central_r2.abs();
    let mae_gap = (fed_mae - central_mae) / central_mae;
    [
        Check {
            id: "c1".into(),
            criterion: format!(
                "federated mean R² within {:.0} % of central's (relative, federated may be better)",
                CENTRAL_TOLERANCE * 100.0
            ),
            passed: r2_gap <= CENTRAL_TOLERANCE,
            detail: format!(
                "federated {fed_r2:.4}, central {central_r2:.4}: federated {} by {:.2} %",
                if r2_gap > 0.0 { "behind" } else { "ahead" },
                r2_gap.abs() * 100.0
            ),
        },
        Check {
            id: "c2".into(),
            criterion: format!(
                "federated mean MAE within {:.0} % of central's (federated may be better)",
                CENTRAL_TOLERANCE * 100.0
            ),
            passed: mae_gap <= CENTRAL_TOLERANCE,
            detail: format!(
                "federated {fed_mae:.2}, central {central_mae:.2}: federated {} by {:.2} %",
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
