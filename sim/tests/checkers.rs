//! Deliberately broken nodes are caught, a failing seed replays its failure,
//! and the binary reports both.

use std::process::Command;

use mc_sim::checker::Invariant;
use mc_sim::faults::Fault;
use mc_sim::{Error, Scenario};

fn broken_sync() -> Scenario {
    Scenario::built_in("broken-sync-100").unwrap()
}

#[test]
fn a_node_that_drops_every_sync_is_caught_by_the_convergence_checker() {
    let err = mc_sim::run(broken_sync(), "broken-sync-100", 3).unwrap_err();
    let v = err
        .violation()
        .unwrap_or_else(|| panic!("not a violation: {err}"));
    assert_eq!(v.invariant, Invariant::Convergence);
    assert!(v.message.contains("n0007"), "{}", v.message);
    // The deadline is the heal (70 s) plus the bound.
    assert!((80.0..80.5).contains(&(v.at as f64 / 1e6)), "{}", v.at);
    assert_eq!(v.trace.len(), mc_sim::trace::CAPACITY);
    let text = err.to_string();
    assert!(
        text.contains("seed 3") && text.contains("replay: mc-sim run broken-sync-100 --seed 3"),
        "{text}"
    );
}

#[test]
fn the_same_partition_without_the_broken_node_converges() {
    let mut s = broken_sync();
    s.faults.retain(|f| !matches!(f, Fault::DropSync { .. }));
    let r = mc_sim::run(s, "broken-sync-100", 3).unwrap();
    assert!(r.convergence.iter().any(|c| c.after == "heal"));
}

#[test]
fn a_failing_seed_replays_the_same_violation() {
    let once = || match mc_sim::run(broken_sync(), "broken-sync-100", 11) {
        Err(Error::Violation(v)) => *v,
        other => panic!("expected a violation, got {other:?}"),
    };
    let first = once();
    assert_eq!(first, once(), "same seed, same violation, same trace");
}

const UNSAFE_ACKS: &str = r#"
name = "unsafe-acks"
nodes = 20
duration_s = 60
sites = ["eu-de", "eu-gb"]

[disk]
flush_min_ms = 100
flush_max_ms = 300

[[workload]]
kind = "knowledge-writes"
rate_per_s = 50.0
start_s = 5
stop_s = 10
target = { nodes = [0] }

[[faults]]
kind = "unsafe-acks"
at_s = 0
target = { nodes = [0] }

[[faults]]
kind = "crash"
at_s = 10
target = { nodes = [0] }
restart_after_s = 5
"#;

#[test]
fn acknowledging_before_the_flush_is_caught_by_the_lost_write_checker() {
    let s = Scenario::from_toml(UNSAFE_ACKS, "unsafe-acks").unwrap();
    let err = mc_sim::run(s, "unsafe-acks", 1).unwrap_err();
    let v = err
        .violation()
        .unwrap_or_else(|| panic!("not a violation: {err}"));
    assert_eq!(v.invariant, Invariant::NoLostWrite);
    assert_eq!(v.at, 15_000_000, "checked right at the restart");
    assert!(v.message.contains("n0000 acknowledged w/"), "{}", v.message);
}

#[test]
fn the_same_crash_loses_nothing_acknowledged_when_acks_wait_for_the_flush() {
    let mut s = Scenario::from_toml(UNSAFE_ACKS, "unsafe-acks").unwrap();
    s.faults.retain(|f| !matches!(f, Fault::UnsafeAcks { .. }));
    let r = mc_sim::run(s, "unsafe-acks", 1).unwrap();
    assert!(
        r.faults.unflushed_batches_lost > 0,
        "the crash should catch writes in flight"
    );
    assert!(r.faults.replies_lost > 0);
    assert_eq!(
        r.writes.acknowledged + r.faults.replies_lost,
        r.writes.issued
    );
}

fn mc_sim_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mc-sim"))
}

#[test]
fn the_binary_exits_non_zero_and_prints_the_replay_command() {
    let out = mc_sim_bin()
        .args(["run", "broken-sync-100", "--seed", "3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invariant violated: convergence"),
        "{stderr}"
    );
    assert!(
        stderr.contains("replay: mc-sim run broken-sync-100 --seed 3"),
        "{stderr}"
    );
    assert!(stderr.contains("last 64 events"), "{stderr}");
}

#[test]
fn the_binary_writes_the_json_report_of_a_scenario_file() {
    let dir = std::env::temp_dir().join(format!("mc-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("small.toml");
    let json = dir.join("report.json");
    std::fs::write(
        &scenario,
        "name = \"small\"\nnodes = 12\nduration_s = 60\n[[workload]]\nkind = \"knowledge-writes\"\nrate_per_s = 1.0\n",
    )
    .unwrap();
    let out = mc_sim_bin()
        .args([
            "run",
            scenario.to_str().unwrap(),
            "--seed",
            "9",
            "--json",
            json.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("faster than real time"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["seed"], 9);
    assert_eq!(report["nodes"], 12);
    assert_eq!(report["delivery_ratio"], 1.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
