//! Sweeps: one scenario at several cluster sizes, as a table and plots.
//!
//! `mc-sim sweep --nodes 10,30,100,300,1000` runs the base scenario
//! (default `partition-heal-100`) once per size with the node count replaced,
//! and writes into the output directory:
//!
//! - `sweep.md` and `sweep.csv` — one row per size: convergence time after
//!   the heal against its bound, dissemination latency, messages and bytes per
//!   node per second, duplicate ratio, events and wall time;
//! - `sweep.json` — the full report of every run;
//! - `convergence.svg|png` and `bytes.svg|png` — convergence time and bytes
//!   per node per second against cluster size (see [`crate::plot`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::report::Report;
use crate::{Error, Scenario};

/// The base scenario with `nodes` nodes (the name says so).
pub fn resize(base: &Scenario, nodes: usize) -> Scenario {
    let mut s = base.clone();
    s.nodes = nodes;
    s.name = format!("{}@{nodes}", base.name);
    s
}

/// One size's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Cluster size.
    pub nodes: usize,
    /// Slowest convergence after a heal or restart (ms), if any was checked.
    pub convergence_ms: Option<f64>,
    /// The bound it had to meet (ms).
    pub bound_ms: f64,
    /// Dissemination latency outside faults, median (ms).
    pub p50_ms: f64,
    /// Dissemination latency outside faults, 99th percentile (ms).
    pub p99_ms: f64,
    /// Messages per node per second.
    pub messages_per_node_per_s: f64,
    /// Bytes per node per second.
    pub bytes_per_node_per_s: f64,
    /// Of which gossip (messages and control frames).
    pub gossip_bytes_per_node_per_s: f64,
    /// Of which point-to-point (sync and hello).
    pub sync_bytes_per_node_per_s: f64,
    /// Gossip duplicate ratio.
    pub duplicate_ratio: f64,
    /// Events processed.
    pub events: u64,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Wall-clock seconds the run took (not deterministic).
    pub wall_s: f64,
}

impl Row {
    /// The row of one run.
    pub fn new(report: &Report, wall_s: f64) -> Self {
        let convergence_ms = report
            .convergence
            .iter()
            .filter(|c| c.after != "the settle time")
            .map(|c| c.converged_ms)
            .reduce(f64::max);
        let per_node_s = (report.nodes as f64 * report.virtual_s).max(1e-9);
        let bytes_of = |kinds: &[&str]| {
            kinds
                .iter()
                .filter_map(|k| report.traffic.by_kind.get(*k))
                .map(|c| c.bytes as f64)
                .sum::<f64>()
                / per_node_s
        };
        Self {
            gossip_bytes_per_node_per_s: bytes_of(&[
                "gossip-publish",
                "gossip-forward",
                "ihave",
                "iwant",
                "graft",
                "prune",
            ]),
            sync_bytes_per_node_per_s: bytes_of(&["sync", "hello", "other-direct"]),
            nodes: report.nodes,
            convergence_ms,
            bound_ms: report.convergence_bound_ms,
            p50_ms: report.dissemination_outside_faults_ms.p50,
            p99_ms: report.dissemination_outside_faults_ms.p99,
            messages_per_node_per_s: report.traffic.messages_per_node_per_s,
            bytes_per_node_per_s: report.traffic.bytes_per_node_per_s,
            duplicate_ratio: report.gossip.duplicate_ratio,
            events: report.events,
            virtual_s: report.virtual_s,
            wall_s,
        }
    }
}

/// The Markdown table.
pub fn markdown(base: &str, seed: u64, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Sweep of `{base}`, seed {seed}.\n");
    let _ = writeln!(
        s,
        "| nodes | convergence after heal | bound | dissemination p50 (outside faults) | p99 | msg/node/s | bytes/node/s | duplicates | events | virtual s | wall s |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let conv = r
            .convergence_ms
            .map_or("-".to_string(), |c| format!("{c:.0} ms"));
        let _ = writeln!(
            s,
            "| {} | {conv} | {:.0} ms | {:.1} ms | {:.1} ms | {:.1} | {:.0} | {:.1} % | {} | {:.0} | {:.1} |",
            r.nodes,
            r.bound_ms,
            r.p50_ms,
            r.p99_ms,
            r.messages_per_node_per_s,
            r.bytes_per_node_per_s,
            100.0 * r.duplicate_ratio,
            r.events,
            r.virtual_s,
            r.wall_s
        );
    }
    s
}

/// The CSV table.
pub fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "nodes,convergence_ms,bound_ms,p50_ms,p99_ms,messages_per_node_per_s,bytes_per_node_per_s,duplicate_ratio,events,virtual_s,wall_s\n",
    );
    for r in rows {
        let conv = r
            .convergence_ms
            .map_or(String::new(), |c| format!("{c:.3}"));
        let _ = writeln!(
            s,
            "{},{conv},{:.3},{:.3},{:.3},{:.3},{:.3},{:.5},{},{:.3},{:.3}",
            r.nodes,
            r.bound_ms,
            r.p50_ms,
            r.p99_ms,
            r.messages_per_node_per_s,
            r.bytes_per_node_per_s,
            r.duplicate_ratio,
            r.events,
            r.virtual_s,
            r.wall_s
        );
    }
    s
}

fn write(path: PathBuf, text: &str, written: &mut Vec<PathBuf>) -> Result<(), Error> {
    std::fs::write(&path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    written.push(path);
    Ok(())
}

/// Writes the tables, the reports and the plots into `dir`; returns the
/// files written and, if plots could not be drawn, why.
pub fn write_outputs(
    dir: &Path,
    base: &str,
    seed: u64,
    rows: &[Row],
    reports: &[Report],
) -> Result<(Vec<PathBuf>, Option<String>), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut written = Vec::new();
    write(
        dir.join("sweep.md"),
        &markdown(base, seed, rows),
        &mut written,
    )?;
    write(dir.join("sweep.csv"), &csv(rows), &mut written)?;
    let json = serde_json::to_string_pretty(reports).unwrap_or_default();
    write(dir.join("sweep.json"), &(json + "\n"), &mut written)?;
    let note = match crate::plot::sweep_plots(dir, rows) {
        Ok(files) => {
            written.extend(files);
            None
        }
        Err(Error::Plot { detail, .. }) if detail.contains("no TrueType font") => Some(detail),
        Err(e) => return Err(e),
    };
    Ok((written, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(nodes: usize) -> Row {
        Row {
            nodes,
            convergence_ms: Some(812.5),
            bound_ms: 10_169.0,
            p50_ms: 150.0,
            p99_ms: 400.0,
            messages_per_node_per_s: 12.0,
            bytes_per_node_per_s: 4_000.0,
            gossip_bytes_per_node_per_s: 3_000.0,
            sync_bytes_per_node_per_s: 1_000.0,
            duplicate_ratio: 0.5,
            events: 1_000,
            virtual_s: 60.0,
            wall_s: 1.5,
        }
    }

    #[test]
    fn tables_have_one_line_per_size() {
        let rows = vec![row(10), row(30)];
        let md = markdown("partition-heal-100", 1, &rows);
        assert_eq!(
            md.lines()
                .filter(|l| l.starts_with("| 10 ") || l.starts_with("| 30 "))
                .count(),
            2
        );
        assert!(md.contains("812 ms") || md.contains("813 ms"));
        let csv = csv(&rows);
        assert_eq!(csv.lines().count(), 3);
        assert!(
            csv.lines()
                .nth(1)
                .unwrap()
                .starts_with("10,812.500,10169.000")
        );
    }

    #[test]
    fn resizing_keeps_everything_but_the_size() {
        let base = Scenario::built_in("steady-100").unwrap();
        let s = resize(&base, 30);
        assert_eq!(s.nodes, 30);
        assert_eq!(s.name, "steady-100@30");
        assert_eq!(s.workload, base.workload);
    }
}
