//! The built-in scenarios hold their invariants with several seeds, and a
//! seed always gives the same report.

use mc_sim::{Report, Scenario};

fn run(name: &str, seed: u64) -> Report {
    let scenario = Scenario::built_in(name).unwrap();
    mc_sim::run(scenario, name, seed).unwrap_or_else(|e| panic!("{name} with seed {seed}:\n{e}"))
}

fn assert_everything_delivered(r: &Report) {
    assert!(
        r.writes.issued > 20,
        "{}: only {} writes",
        r.scenario,
        r.writes.issued
    );
    assert_eq!(
        r.writes.acknowledged + r.faults.replies_lost,
        r.writes.issued,
        "{}",
        r.scenario
    );
    assert_eq!(r.delivery_ratio, 1.0, "{}", r.scenario);
    assert_eq!(
        r.checks,
        ["message-size", "no-lost-write", "convergence"],
        "{}",
        r.scenario
    );
    assert!(r.traffic.max_gossip_bytes <= mc_protocols::MAX_GOSSIP_MESSAGE_BYTES);
}

#[test]
fn steady_100_disseminates_every_write_by_gossip_within_a_second() {
    for seed in [1, 2] {
        let r = run("steady-100", seed);
        assert_everything_delivered(&r);
        assert_eq!(r.writes.disseminated, r.writes.acknowledged);
        assert!(
            r.dissemination_ms.p99 < 1_000.0,
            "seed {seed}: {:?}",
            r.dissemination_ms
        );
        assert!(
            r.first_arrival_by_gossip > 0.95,
            "seed {seed}: {}",
            r.first_arrival_by_gossip
        );
        assert!(r.gossip.duplicate_ratio > 0.0 && r.gossip.duplicate_ratio < 1.0);
        assert_eq!(r.faults.crashes, 0);
    }
}

#[test]
fn partition_heal_100_converges_within_two_sync_intervals_plus_the_longest_latency() {
    for seed in [1, 2] {
        let r = run("partition-heal-100", seed);
        assert_everything_delivered(&r);
        let heal = r
            .convergence
            .iter()
            .find(|c| c.after == "heal")
            .expect("a heal check");
        assert_eq!(heal.nodes, 100);
        assert_eq!(heal.groups, 1);
        assert!(
            heal.converged_ms > 0.0,
            "the partition left nothing to reconcile"
        );
        assert!(heal.converged_ms <= heal.bound_ms, "seed {seed}: {heal:?}");
        // 2 × 5 s + Sydney–São Paulo one way (163.75 ms) + 5 ms jitter.
        assert_eq!(heal.bound_ms, 10_168.75);
        // Writes made during the partition can only cross it by sync after the heal.
        assert!(
            r.first_arrival_by_gossip < 0.95,
            "seed {seed}: {}",
            r.first_arrival_by_gossip
        );
        assert!(r.dissemination_outside_faults_ms.p99 < 1_000.0);
    }
}

#[test]
fn region_outage_100_keeps_acknowledged_writes_and_catches_up() {
    for seed in [1, 2] {
        let r = run("region-outage-100", seed);
        assert_everything_delivered(&r);
        assert_eq!(
            (r.faults.crashes, r.faults.restarts),
            (12, 10),
            "seed {seed}"
        );
        let restart = r
            .convergence
            .iter()
            .find(|c| c.after.starts_with("restart"))
            .expect("a restart check");
        assert!(
            restart.converged_ms <= restart.bound_ms,
            "seed {seed}: {restart:?}"
        );
        assert_eq!(restart.nodes, 100);
        let end = r.convergence.last().unwrap();
        assert_eq!(
            (end.after.as_str(), end.nodes),
            ("the settle time", 98),
            "two nodes stay down"
        );
    }
}

#[test]
fn lossy_wan_300_repairs_what_gossip_loses() {
    let r = run("lossy-wan-300", 1);
    assert_everything_delivered(&r);
    assert!(
        r.traffic.gossip_frames_lost > 1_000,
        "{}",
        r.traffic.gossip_frames_lost
    );
    assert!(r.traffic.duplicated_by_faults > 0);
    assert!(r.faults.deferred_while_paused > 0);
    assert!(r.first_arrival_by_gossip < 1.0);
}

#[test]
fn the_same_seed_gives_a_byte_identical_report() {
    let json = |seed| run("partition-heal-100", seed).to_json();
    let first = json(7);
    assert_eq!(first, json(7));
    assert_ne!(first, json(8));
    assert!(
        !first.contains("wall"),
        "wall-clock time must stay out of the report"
    );
}
