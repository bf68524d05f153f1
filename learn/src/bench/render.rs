//! The report as text: settings, a table per organisation, round timings,
//! the Byzantine table and the acceptance checks.

use std::fmt::Write;

use super::{Report, RunSummary};

/// The whole report, for a terminal.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, r);
    out
}

fn write_report(out: &mut String, r: &Report) -> std::fmt::Result {
    let o = &r.options;
    writeln!(
        out,
        "mc-learn bench federated: model {} ({} parameters), {} organisations, seed {}, device {:?}",
        o.model, r.num_params, o.orgs, o.seed, o.device
    )?;
    let federated = match &o.federated_from {
        Some(path) => format!(
            "federated: the global model read from {} (no campaign ran for this report)",
            path.display()
        ),
        None => format!(
            "federated: {}, {} rounds × {} local epochs, batch {}, lr {}, drift correction {}, \
             max update norm {}",
            o.rule,
            o.rounds,
            o.local_epochs,
            o.batch_size,
            o.learning_rate,
            super::on_off(o.drift_correction, o.rule),
            o.max_update_norm
        ),
    };
    writeln!(
        out,
        "{federated}; local-only and central: {} epochs, TrainConfig defaults; \
         personalised: the federated model's last {} layers retrained by each organisation \
         for {} epochs at lr {}",
        o.baseline_epochs, o.personalise_layers, o.personalise_epochs, o.personalise_learning_rate
    )?;
    writeln!(
        out,
        "rows split by time: earliest {:.0} % train, latest {:.0} % held out (all scores on held-out rows)",
        o.train_fraction * 100.0,
        (1.0 - o.train_fraction) * 100.0
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<8} {:>5} {:>5} {:>4} | {:>7} {:>7} | {:>7} {:>7} | {:>7} {:>7} | {:>9} | {:>7} {:>7} | {:>9}",
        "org",
        "rows",
        "train",
        "test",
        "local R²",
        "MAE",
        "cent R²",
        "MAE",
        "fed R²",
        "MAE",
        "fed/local",
        "pers R²",
        "MAE",
        "pers/local"
    )?;
    for org in &r.orgs {
        writeln!(
            out,
            "{:<8} {:>5} {:>5} {:>4} | {:>7.3} {:>7.2} | {:>7.3} {:>7.2} | {:>7.3} {:>7.2} | {:>+8.1}% | {}{}",
            org.name,
            org.rows,
            org.train_rows,
            org.test_rows,
            org.local.r2,
            org.local.mae,
            org.central.r2,
            org.central.mae,
            org.federated.r2,
            org.federated.mae,
            (org.federated.mae / org.local.mae - 1.0) * 100.0,
            match org.personalised {
                Some(p) => format!(
                    "{:>7.3} {:>7.2} | {:>+8.1}%",
                    p.r2,
                    p.mae,
                    (p.mae / org.local.mae - 1.0) * 100.0
                ),
                None => format!("{:>7} {:>7} | {:>9}", "-", "-", "-"),
            },
            if org.byzantine {
                "  (byzantine in d)"
            } else {
                ""
            }
        )?;
    }
    let n = r.orgs.len().max(1) as f64;
    let mean = |f: &dyn Fn(&super::OrgReport) -> f64| r.orgs.iter().map(f).sum::<f64>() / n;
    let min =
        |f: &dyn Fn(&super::OrgReport) -> f64| r.orgs.iter().map(f).fold(f64::INFINITY, f64::min);
    let personalised = r.orgs.iter().all(|o| o.personalised.is_some());
    let pers =
        |f: fn(super::Score) -> f64| move |o: &super::OrgReport| o.personalised.map_or(f64::NAN, f);
    writeln!(
        out,
        "{:<26} | {:>7.3} {:>7.2} | {:>7.3} {:>7.2} | {:>7.3} {:>7.2} | {:>9} | {}",
        "mean",
        mean(&|o| o.local.r2),
        mean(&|o| o.local.mae),
        mean(&|o| o.central.r2),
        mean(&|o| o.central.mae),
        mean(&|o| o.federated.r2),
        mean(&|o| o.federated.mae),
        "",
        if personalised {
            format!(
                "{:>7.3} {:>7.2} |",
                mean(&pers(|s| s.r2)),
                mean(&pers(|s| s.mae))
            )
        } else {
            String::new()
        }
    )?;
    writeln!(
        out,
        "{:<26} | {:>7.3} {:>7} | {:>7.3} {:>7} | {:>7.3} {:>7} | {:>9} | {}",
        "min",
        min(&|o| o.local.r2),
        "",
        min(&|o| o.central.r2),
        "",
        min(&|o| o.federated.r2),
        "",
        "",
        if personalised {
            format!("{:>7.3} {:>7} |", min(&pers(|s| s.r2)), "")
        } else {
            String::new()
        }
    )?;

    let rounds = &r.federated.rounds;
    if !rounds.is_empty() {
        let k = rounds.len() as f64;
        let stat = |f: &dyn Fn(&super::RoundStats) -> f64| {
            let mean = rounds.iter().map(f).sum::<f64>() / k;
            let max = rounds.iter().map(f).fold(0.0, f64::max);
            (mean, max)
        };
        let (verify, verify_max) = stat(&|s| s.verify_ms);
        let (aggregate, aggregate_max) = stat(&|s| s.aggregate_ms);
        let (both, both_max) = stat(&|s| s.verify_ms + s.aggregate_ms);
        let (train, _) = stat(&|s| s.train_ms);
        writeln!(out)?;
        writeln!(
            out,
            "federated rounds ({} updates each): verify {verify:.2} ms (max {verify_max:.2}), \
             aggregate {aggregate:.2} ms (max {aggregate_max:.2}), verify + aggregate {both:.2} ms \
             (max {both_max:.2}); local training of all participants {:.2} s per round",
            r.orgs.len(),
            train / 1e3
        )?;
    }
    writeln!(
        out,
        "federated model hash {}; refused updates: {}",
        r.federated.model_hash,
        rejections(&r.federated.rejections)
    )?;

    if let Some(b) = &r.byzantine {
        writeln!(out)?;
        writeln!(
            out,
            "Byzantine participants: {} ({} of {}); R² on the {} honest organisations' held-out rows",
            b.participants.join(", "),
            b.participants.len(),
            r.orgs.len(),
            r.orgs.len() - b.participants.len()
        )?;
        let labels: Vec<String> = b
            .rules
            .first()
            .map(|rule| rule.attacked.iter().map(|(a, _)| a.label()).collect())
            .unwrap_or_default();
        write!(
            out,
            "{:<20} | {:>17} | {:>17}",
            "rule", "clean mean/min", "absent mean/min"
        )?;
        for label in &labels {
            write!(out, " | {:>32}", format!("{label}: mean/min (drop)"))?;
        }
        writeln!(out, " | corrupted updates accepted by the collector")?;
        for rule in &b.rules {
            write!(
                out,
                "{:<20} | {:>8}/{:<8}",
                rule.rule.to_string(),
                r2(rule.clean.mean_r2),
                r2(rule.clean.min_r2)
            )?;
            match &rule.absent {
                Some(a) => write!(out, " | {:>8}/{:<8}", r2(a.mean_r2), r2(a.min_r2))?,
                None => write!(out, " | {:>17}", "")?,
            }
            for (_, s) in &rule.attacked {
                write!(
                    out,
                    " | {:>9}/{:<9} ({:>9})",
                    r2(s.mean_r2),
                    r2(s.min_r2),
                    super::targets::signed(rule.clean.mean_r2 - s.mean_r2)
                )?;
            }
            let accepted: Vec<String> = rule.attacked.iter().map(|(_, s)| corrupted(s)).collect();
            writeln!(out, " | {}", accepted.join("; "))?;
        }
    }

    writeln!(out)?;
    writeln!(out, "acceptance")?;
    for c in &r.checks {
        writeln!(
            out,
            "{} ({}) {}: {}",
            if c.passed { "PASS" } else { "FAIL" },
            c.id,
            c.criterion,
            c.detail
        )?;
    }
    let w = &r.wall_s;
    writeln!(out)?;
    writeln!(
        out,
        "wall time: data {:.1} s, local-only {:.1} s, central {:.1} s, federated {:.1} s, \
         personalised {:.1} s, byzantine {:.1} s, total {:.1} s",
        w.data, w.local_only, w.central, w.federated, w.personalised, w.byzantine, w.total
    )
}

/// An R² that may have blown up, in at most 9 characters.
fn r2(v: f64) -> String {
    if v.is_finite() && v > -1e3 {
        format!("{v:.4}")
    } else {
        format!("{v:.1e}")
    }
}

fn corrupted(s: &RunSummary) -> String {
    let refused: u64 = s.rejections.values().sum();
    format!(
        "{}/{} ({} updates refused)",
        s.byzantine_accepted, s.byzantine_offered, refused
    )
}

fn rejections(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
