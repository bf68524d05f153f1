//! A federated-learning campaign with Byzantine participants, run by the
//! real node cores over the simulated WAN: it completes, honest nodes agree,
//! sabotaged updates are refused, and a seed replays it byte for byte. And a
//! campaign during which two members crash and restart: they catch up and
//! every member ends on one model.

use std::sync::OnceLock;

use mc_sim::report::LearningReport;
use mc_sim::{Report, Scenario};

/// Ten organisations on four continents, six model rounds, six of them
/// Byzantine: two send validly signed bad weights, one NaN, and three have
/// their updates broken on the wire (forged signature, tampered weights,
/// re-signed by an outsider).
const SMALL: &str = r#"
name = "fl-byzantine-10"
nodes = 10
duration_s = 160
sites = ["us-east", "eu-de", "jp-tok", "au-syd"]

[node]
sync_interval_ms = 10000

[learning]
model = "latency"
rounds = 6
local_epochs = 16
aggregation = "median"
round_deadline_s = 10
rows_cap = 400
start_at_s = 5
# Six rounds of the campaign default's 16 local epochs on 400 rows per
# organisation, four of them honest, under attack: the model must beat the
# pooled mean (R² 0) by a margin; seeds 1-3 reach 0.39, 0.85 and 0.76
# (from the He-uniform start, 0.59 on seed 1). Three rounds of two epochs,
# as this ran before, were too short for a start of PyTorch's small weights
# to learn anything (-0.02). Quality proper is checked on the
# 50-organisation scenario.
pooled_score_floor = 0.1
byzantine = { sign_flip = 1, scale = 1, nan = 1, forged = 1, tampered = 1, impostor = 1 }
"#;

fn run(seed: u64) -> Report {
    let scenario = Scenario::from_toml(SMALL, "fl-byzantine-10").unwrap();
    mc_sim::run(scenario, "fl-byzantine-10", seed)
        .unwrap_or_else(|e| panic!("fl-byzantine-10 with seed {seed}:\n{e}"))
}

/// The run with seed 1, shared by the tests (a debug-build run takes seconds,
/// mostly verifying signatures).
fn seed_1() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| run(1))
}

fn learning(report: &Report) -> &LearningReport {
    report.learning.as_ref().expect("a learning report")
}

#[test]
fn a_byzantine_campaign_completes_with_one_honest_model_and_every_sabotage_refused() {
    let report = seed_1();
    let l = learning(report);
    assert_eq!((l.participants, l.honest), (10, 4));
    assert_eq!(l.honest_completed, 4, "every honest participant finished");
    assert_eq!(l.honest_final_models, 1, "honest nodes hold one model");
    assert_eq!(l.rounds.len(), 7, "the moments round and six model rounds");
    for r in &l.rounds {
        // Six participants can send valid updates: ten less the NaN, forged,
        // tampered and impostor ones; every honest node took all six.
        assert_eq!((r.accepted_min, r.accepted_max), (6, 6), "{r:?}");
        assert_eq!((r.digests, r.models), (1, 1), "{r:?}");
        // The saboteurs never complete a round: it closes at its deadline.
        assert_eq!(r.closed_by_deadline, 4, "{r:?}");
    }
    for kind in [
        "non_finite",
        "bad_signature",
        "weights_mismatch",
        "not_participant",
    ] {
        let count = l.rejections.get(kind).copied().unwrap_or(0);
        assert!(count >= 4, "{kind}: {count} at 4 honest nodes");
    }
    assert!(l.sabotaged_messages > 0);
    assert!(l.bytes > 0 && report.traffic.by_kind.contains_key("learn"));
    // Better than predicting the pooled mean by a margin (seed 1: 0.39).
    assert!(l.score.pooled >= 0.1, "{:?}", l.score);
    for check in [
        "model-agreement",
        "sabotage-refused",
        "campaign-completes",
        "model-quality",
    ] {
        assert!(report.checks.iter().any(|c| c == check), "{check}");
    }
}

#[test]
fn the_same_seed_replays_a_campaign_byte_for_byte() {
    // Runs alongside the other test's run of the same seed.
    let again = run(1).to_json();
    assert_eq!(seed_1().to_json(), again);
    assert!(again.contains("\"common_model_hash\""));
}

/// Ten organisations, FedAvg with drift correction; two members crash
/// during the model rounds and restart 9 s later, by which time the others
/// closed rounds without them at the 3-s deadline.
const OUTAGE: &str = r#"
name = "fl-outage-10"
nodes = 10
duration_s = 120
sites = ["us-east", "eu-de", "jp-tok", "au-syd"]

[node]
sync_interval_ms = 10000

[learning]
model = "latency"
rounds = 12
local_epochs = 1
aggregation = "fedavg"
round_deadline_s = 3
rows_cap = 300
start_at_s = 5

[[faults]]
kind = "crash"
at_s = 7
target = { nodes = [3, 7] }
restart_after_s = 9
"#;

#[test]
fn members_that_crash_mid_campaign_catch_up_and_end_on_the_common_model() {
    let scenario = Scenario::from_toml(OUTAGE, "fl-outage-10").unwrap();
    let report = mc_sim::run(scenario, "fl-outage-10", 1)
        .unwrap_or_else(|e| panic!("fl-outage-10 with seed 1:\n{e}"));
    let l = learning(&report);
    assert_eq!(report.faults.crashes, 2, "{}", report.summary());
    assert_eq!(l.honest_completed, 10, "{}", report.summary());
    assert_eq!(l.honest_final_models, 1, "{}", report.summary());
    assert!(
        l.catch_ups >= 2,
        "both crashed members caught up: {}",
        report.summary()
    );
    // Some rounds closed at their deadline without the crashed members.
    assert!(
        l.rounds.iter().any(|r| r.accepted_min < 10),
        "{}",
        report.summary()
    );
    for check in ["model-agreement", "campaign-completes"] {
        assert!(report.checks.iter().any(|c| c == check), "{check}");
    }
}
