//! `mc-sim`: run, replay and sweep simulations of Mission Control Mesh.
//! See the `mc_sim` crate docs for the model.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mc_sim::{Error, Scenario, scenario, sweep};

/// Deterministic simulator: many real node cores, virtual time, faults, checks.
#[derive(Debug, Parser)]
#[command(name = "mc-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the built-in scenarios.
    List,
    /// Run (or replay) one scenario with one seed.
    Run {
        /// A built-in scenario name or a TOML file.
        scenario: String,
        /// The seed; the same seed replays the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Replace the scenario's node count.
        #[arg(long)]
        nodes: Option<usize>,
        /// Replace the scenario's duration (s).
        #[arg(long)]
        duration_s: Option<f64>,
    },
    /// Run a scenario at several sizes; write a table and plots.
    Sweep {
        /// Cluster sizes.
        #[arg(long, value_delimiter = ',', default_value = "10,30,100,300,1000")]
        nodes: Vec<usize>,
        /// The base scenario (built-in name or file).
        #[arg(long, default_value = "partition-heal-100")]
        scenario: String,
        /// The seed of every run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Replace the base scenario's duration (s).
        #[arg(long)]
        duration_s: Option<f64>,
        /// Output directory.
        #[arg(long, default_value = "sweep")]
        out: PathBuf,
    },
}

fn load(name: &str, nodes: Option<usize>, duration_s: Option<f64>) -> anyhow::Result<Scenario> {
    let mut s = Scenario::load(name).with_context(|| format!("cannot load scenario {name}"))?;
    if let Some(n) = nodes {
        s.nodes = n;
    }
    if let Some(d) = duration_s {
        s.duration_s = d;
    }
    s.validate()
        .context("the overrides do not fit the scenario")?;
    Ok(s)
}

/// Runs one scenario, printing the summary and the wall-clock speed.
fn run_one(scenario: Scenario, origin: &str, seed: u64) -> Result<(mc_sim::Report, f64), Error> {
    let started = Instant::now();
    let report = mc_sim::run(scenario, origin, seed)?;
    Ok((report, started.elapsed().as_secs_f64()))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mc-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        Command::List => {
            for (name, _) in scenario::BUILT_IN {
                let s = Scenario::built_in(name)?;
                println!(
                    "{name:<20} {:>5} nodes {:>6} s  {}",
                    s.nodes, s.duration_s, s.description
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            scenario,
            seed,
            json,
            nodes,
            duration_s,
        } => {
            let s = load(&scenario, nodes, duration_s)?;
            match run_one(s, &scenario, seed) {
                Ok((report, wall)) => {
                    print!("{}", report.summary());
                    println!(
                        "wall time {wall:.2} s: {:.0}x faster than real time ({:.0} events/s)",
                        report.virtual_s / wall.max(1e-9),
                        report.events as f64 / wall.max(1e-9)
                    );
                    if let Some(path) = json {
                        std::fs::write(&path, report.to_json())
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        println!("report written to {}", path.display());
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(Error::Violation(v)) => {
                    eprint!("{v}");
                    Ok(ExitCode::FAILURE)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Sweep {
            nodes,
            scenario,
            seed,
            duration_s,
            out,
        } => {
            let base = load(&scenario, None, duration_s)?;
            let mut rows = Vec::new();
            let mut reports = Vec::new();
            for n in nodes {
                let s = sweep::resize(&base, n);
                match run_one(s, &scenario, seed) {
                    Ok((report, wall)) => {
                        let row = sweep::Row::new(&report, wall);
                        println!(
                            "{n:>5} nodes: convergence {} ms (bound {:.0}), p99 {:.1} ms, {:.0} B/node/s, wall {wall:.1} s",
                            row.convergence_ms.map_or("-".into(), |c| format!("{c:.0}")),
                            row.bound_ms,
                            row.p99_ms,
                            row.bytes_per_node_per_s
                        );
                        rows.push(row);
                        reports.push(report);
                    }
                    Err(Error::Violation(v)) => {
                        eprint!("at {n} nodes: {v}");
                        return Ok(ExitCode::FAILURE);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let (files, note) = sweep::write_outputs(&out, &base.name, seed, &rows, &reports)?;
            print!("{}", sweep::markdown(&base.name, seed, &rows));
            for f in files {
                println!("wrote {}", f.display());
            }
            if let Some(note) = note {
                eprintln!("mc-sim: plots skipped: {note}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
