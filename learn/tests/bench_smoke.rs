//! `mc-learn bench federated` at toy size: the report has every part, the
//! federated model does not depend on the order updates reach the
//! collector (nor on the training thread count), and the Byzantine updates
//! are counted.

use mc_learn::bench::{self, Options, campaign, data};
use mc_learn::tch::Device;
use mc_learn_core::aggregate::Rule;

fn tiny() -> Options {
    // Tiny layers: libtorch's intra-op threads would only add overhead.
    mc_learn::tch::set_num_threads(1);
    Options {
        orgs: 4,
        seed: 3,
        max_rows: Some(200),
        rounds: 2,
        local_epochs: 1,
        baseline_epochs: 2,
        personalise_epochs: 2,
        byzantine_fraction: 0.25,
        device: Device::Cpu,
        ..Options::default()
    }
}

#[test]
fn tiny_benchmark_reports_every_part() {
    let opts = tiny();
    let mut lines = Vec::new();
    let report = bench::federated(&opts, &mut |l| lines.push(l.to_owned())).unwrap();
    assert!(!lines.is_empty(), "progress is reported");

    assert_eq!(report.orgs.len(), 4);
    for org in &report.orgs {
        assert_eq!((org.rows, org.train_rows, org.test_rows), (200, 160, 40));
        let personalised = org.personalised.expect("personalised by default");
        for s in [org.local, org.central, org.federated, personalised] {
            assert!(
                s.r2.is_finite() && s.mae.is_finite() && s.mae >= 0.0,
                "{org:?}"
            );
        }
    }
    assert_eq!(report.federated.rounds.len(), 2);
    for round in &report.federated.rounds {
        assert_eq!((round.accepted, round.rejected), (4, 0));
        assert!(round.held_out_r2.is_some());
    }
    assert!(report.federated.rejections.is_empty());

    // One Byzantine participant of four, attacking in both rounds.
    let byzantine = report.byzantine.as_ref().expect("a Byzantine section");
    assert_eq!(byzantine.participants, vec!["org-03".to_owned()]);
    assert!(report.orgs[3].byzantine && !report.orgs[0].byzantine);
    let rules: Vec<Rule> = byzantine.rules.iter().map(|r| r.rule).collect();
    assert_eq!(rules, opts.byzantine_rules(1));
    for rule in &byzantine.rules {
        assert_eq!(rule.clean.byzantine_offered, 0);
        // Without the attacker: every robust rule but Multi-Krum (f = 1
        // needs 4 updates, 3 are honest).
        let absent_expected = matches!(rule.rule, Rule::Median | Rule::TrimmedMean { .. });
        assert_eq!(rule.absent.is_some(), absent_expected, "{}", rule.rule);
        assert_eq!(rule.attacked.len(), 2);
        for (attack, run) in &rule.attacked {
            assert_eq!(run.byzantine_offered, 2, "{} {attack:?}", rule.rule);
            // Far under the norm bound: every corrupted update is accepted.
            assert_eq!(run.byzantine_accepted, 2, "{} {attack:?}", rule.rule);
            assert!(run.rejections.is_empty());
            if rule.rule == Rule::FedAvg {
                assert_ne!(run.model_hash, rule.clean.model_hash);
            }
        }
    }
    // The federated run stands in for FedAvg's clean run: a clean FedAvg
    // campaign run on its own over the same data gives the same model.
    let schema = mc_learn_core::schema::builtin_named(&opts.model).unwrap();
    let orgs = data::consortium(
        &schema,
        opts.orgs,
        opts.seed,
        opts.max_rows,
        opts.train_fraction,
    )
    .unwrap();
    let independent = campaign::run(
        &schema,
        &orgs,
        &opts.campaign(Rule::FedAvg, false),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(independent.model_hash, report.federated.model_hash);
    assert_eq!(
        byzantine.rules[0].clean.model_hash,
        report.federated.model_hash
    );

    let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "a",
            "b",
            "c1",
            "c2",
            "a-personalised",
            "b-personalised",
            "c1-personalised",
            "c2-personalised",
            "d-fedavg",
            "d-median",
            "d-trimmed-mean",
            "d-multi-krum",
            "d-median-vs-absent",
            "d-trimmed-mean-vs-absent"
        ]
    );
    let text = bench::render::render(&report);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("PASS (") || l.starts_with("FAIL ("))
            .count(),
        ids.len()
    );
    assert!(text.contains("org-03") && text.contains("sign-flip ×4"));
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["options"]["rule"], "fedavg");
    assert_eq!(json["checks"].as_array().unwrap().len(), ids.len());
}

#[test]
fn personalising_can_be_skipped_and_a_bad_layer_count_is_an_error() {
    let opts = Options {
        byzantine_fraction: 0.0,
        personalise_layers: 0,
        ..tiny()
    };
    let report = bench::federated(&opts, &mut |_| {}).unwrap();
    assert!(report.orgs.iter().all(|o| o.personalised.is_none()));
    let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c1", "c2"]);
    assert!(bench::render::render(&report).contains("  -       -"));

    // A rate that cannot train is refused before the campaign runs.
    let mut lines = Vec::new();
    let no_rate = Options {
        personalise_layers: 2,
        personalise_learning_rate: 0.0,
        ..opts.clone()
    };
    let err = bench::federated(&no_rate, &mut |l| lines.push(l.to_owned())).unwrap_err();
    assert!(
        matches!(err, bench::BenchError::BadOptions(m) if m.contains("learning rate")),
        "{err}"
    );
    assert!(lines.is_empty(), "nothing ran: {lines:?}");

    // The built-in models have three layers.
    let too_many = Options {
        personalise_layers: 4,
        ..opts
    };
    let err = bench::federated(&too_many, &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            bench::BenchError::BadPersonalisation {
                asked: 4,
                layers: 3
            }
        ),
        "{err}"
    );
}

#[test]
fn federated_model_is_independent_of_offer_order_and_threads() {
    let opts = tiny();
    let schema = mc_learn_core::schema::builtin_named("latency").unwrap();
    let orgs = data::consortium(&schema, 4, opts.seed, Some(200), 0.8).unwrap();
    let byzantine = [3];
    for rule in [Rule::FedAvg, Rule::Median, Rule::MultiKrum { f: 1, m: 3 }] {
        let hashes: Vec<String> = [
            (campaign::OfferOrder::Forward, 1),
            (campaign::OfferOrder::Reverse, 1),
            (campaign::OfferOrder::Shuffled(11), 2),
        ]
        .into_iter()
        .map(|(offer_order, jobs)| {
            let settings = campaign::Settings {
                rounds: 2,
                local_epochs: 1,
                train: mc_learn::TrainConfig {
                    batch_size: 64,
                    learning_rate: 2e-3,
                    device: Device::Cpu,
                    ..Default::default()
                },
                rule,
                // Round 2 trains with a correction: it too must not
                // depend on arrival order or thread count.
                drift_correction: true,
                byzantine_skip_correction: false,
                final_rate_fraction: mc_learn_core::plan::FINAL_RATE_FRACTION,
                init: mc_learn_core::init::DEFAULT_INIT,
                max_update_norm: 1_000.0,
                seed: 5,
                offer_order,
                jobs,
                track: false,
            };
            let attack = campaign::Attack::SignFlip { scale: 4.0 };
            let run = campaign::run(
                &schema,
                &orgs,
                &settings,
                Some((attack, &byzantine[..])),
                &mut |_| {},
            )
            .unwrap();
            assert_eq!(run.byzantine_offered, 2);
            run.model_hash
        })
        .collect();
        assert!(hashes.iter().all(|h| *h == hashes[0]), "{rule}: {hashes:?}");
    }
}

/// A small campaign on the CPU: one local epoch, no norm bound, seed 5.
fn settings(rounds: u32, rule: Rule, drift_correction: bool) -> campaign::Settings {
    campaign::Settings {
        rounds,
        local_epochs: 1,
        train: mc_learn::TrainConfig {
            device: Device::Cpu,
            ..Default::default()
        },
        rule,
        drift_correction,
        byzantine_skip_correction: false,
        final_rate_fraction: mc_learn_core::plan::FINAL_RATE_FRACTION,
        init: mc_learn_core::init::DEFAULT_INIT,
        max_update_norm: f64::MAX,
        seed: 5,
        offer_order: campaign::OfferOrder::Forward,
        jobs: 1,
        track: false,
    }
}

/// The `latency` model and four organisations of 200 rows (data seed 3).
fn tiny_consortium() -> (mc_learn_core::ModelSchema, Vec<data::Org>) {
    mc_learn::tch::set_num_threads(1);
    let schema = mc_learn_core::schema::builtin_named("latency").unwrap();
    let orgs = data::consortium(&schema, 4, 3, Some(200), 0.8).unwrap();
    (schema, orgs)
}

#[test]
fn a_norm_bound_refuses_scaled_updates_and_counts_them() {
    let (schema, orgs) = tiny_consortium();
    let honest = settings(1, Rule::FedAvg, false);
    // Measure how far one honest round moves the model, then bound the
    // update norm at 20 times that: honest updates pass, 1000× ones cannot.
    let base = mc_learn_core::init::init_weights(&schema, honest.seed, honest.init);
    let run = campaign::run(&schema, &orgs, &honest, None, &mut |_| {}).unwrap();
    let moved: f64 = run
        .weights
        .iter()
        .zip(&base)
        .map(|(w, b)| f64::from(w - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let bounded = campaign::Settings {
        max_update_norm: 20.0 * moved,
        ..honest
    };
    let run = campaign::run(
        &schema,
        &orgs,
        &bounded,
        Some((campaign::Attack::Scale { factor: 1000.0 }, &[0, 3][..])),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(run.byzantine_offered, 2);
    assert_eq!(run.byzantine_accepted, 0);
    assert_eq!(run.rejections.get("norm_too_large"), Some(&2));
    assert_eq!(run.rounds[0].accepted + run.rounds[0].rejected, 4);
}

#[test]
fn attackers_that_skip_their_correction_train_differently() {
    let (schema, orgs) = tiny_consortium();
    let follow = settings(3, Rule::Median, true);
    let skip = campaign::Settings {
        byzantine_skip_correction: true,
        ..follow.clone()
    };
    let attack = Some((campaign::Attack::SignFlip { scale: 4.0 }, &[3][..]));
    let run = |s: &campaign::Settings| {
        campaign::run(&schema, &orgs, s, attack, &mut |_| {})
            .unwrap()
            .model_hash
    };
    // From round 2 on the attacker has a correction to follow or skip.
    assert_ne!(run(&follow), run(&skip));
    // Without attackers the flag changes nothing.
    let clean = |s: &campaign::Settings| {
        campaign::run(&schema, &orgs, s, None, &mut |_| {})
            .unwrap()
            .model_hash
    };
    assert_eq!(clean(&follow), clean(&skip));
}

#[test]
fn a_saved_global_model_read_back_gives_the_same_report_without_a_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("global.safetensors");
    let saved = bench::federated(
        &Options {
            byzantine_fraction: 0.0,
            save_federated: Some(file.clone()),
            ..tiny()
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(file.exists());

    let mut lines = Vec::new();
    let read = bench::federated(
        &Options {
            byzantine_fraction: 0.0,
            federated_from: Some(file.clone()),
            ..tiny()
        },
        &mut |l| lines.push(l.to_owned()),
    )
    .unwrap();
    assert_eq!(read.federated.model_hash, saved.federated.model_hash);
    assert!(read.federated.rounds.is_empty() && !saved.federated.rounds.is_empty());
    for (a, b) in read.orgs.iter().zip(&saved.orgs) {
        assert_eq!(a.federated, b.federated, "{}", a.name);
        assert_eq!(a.personalised, b.personalised, "{}", a.name);
    }
    assert!(
        lines.iter().any(|l| l.contains("no campaign run")),
        "{lines:?}"
    );
    assert!(bench::render::render(&read).contains("no campaign ran for this report"));

    // Another personalising rate on the same global model changes only the
    // personalised scores.
    let faster = bench::federated(
        &Options {
            byzantine_fraction: 0.0,
            federated_from: Some(file.clone()),
            personalise_learning_rate: 0.01,
            ..tiny()
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(
        faster
            .orgs
            .iter()
            .zip(&read.orgs)
            .all(|(a, b)| a.federated == b.federated)
    );
    assert!(
        faster
            .orgs
            .iter()
            .zip(&read.orgs)
            .any(|(a, b)| a.personalised != b.personalised)
    );

    let refused = |opts: Options| bench::federated(&opts, &mut |_| {}).unwrap_err();

    // Reading and saving at once is refused.
    let err = refused(Options {
        byzantine_fraction: 0.0,
        federated_from: Some(file.clone()),
        save_federated: Some(dir.path().join("other.safetensors")),
        ..tiny()
    });
    assert!(
        matches!(err, bench::BenchError::BadOptions(m) if m.contains("not both")),
        "{err}"
    );

    // The Byzantine runs need the campaign.
    let err = refused(Options {
        federated_from: Some(file),
        ..tiny()
    });
    assert!(
        matches!(err, bench::BenchError::BadOptions(m) if m.contains("byzantine_fraction")),
        "{err}"
    );

    // A missing file is a typed error naming it.
    let err = refused(Options {
        byzantine_fraction: 0.0,
        federated_from: Some(dir.path().join("missing.safetensors")),
        ..tiny()
    });
    assert!(
        matches!(err, bench::BenchError::ModelFile(_)) && err.to_string().contains("missing"),
        "{err}"
    );
}
