//! Synthetic operations data: one row per hour for an organisation, with
//! the structure real telemetry has, for demos, the simulator, tests and the
//! federated-learning benchmark.
//!
//! An [`OrgProfile`] describes an organisation: how much data it has, how
//! loaded, how provisioned and how incident-prone it is. [`consortium`] draws
//! a varied set of profiles, [`generate`] turns one into a [`Table`] with the
//! columns in [`COLUMNS`]: the seven [`OPS_FEATURES`] and the four
//! targets. Both take their randomness as an argument and nothing else: the
//! same seed gives the same data. (Across platforms, `exp`, `ln` and `tanh`
//! may differ in the last bit; the rounding of every value hides that
//! almost always, but bit-identical output is promised only on one
//! platform.)
//!
//! # What federated learning needs from it
//!
//! The targets are **one function of the features for every organisation**
//! (the constants below are shared; no per-organisation parameter appears in
//! the target formulas), so a single global model can fit every member. The
//! organisations differ, non-IID, in *which* feature values they see: load
//! scale (a small org peaks at ~40 threads, a large one at ~400), capacity
//! and MCP provisioning, workload mix, memory baseline, incident frequency,
//! growth and amount of data.
//!
//! # The model
//!
//! Hour `t = 0, 1, …` is hour `h = t mod 24` of day `w = ⌊t/24⌋ mod 7`
//! (0 = Monday). Per-organisation parameters are those of [`OrgProfile`];
//! `N(σ)` is a fresh normal draw with standard deviation σ.
//!
//! Load:
//!
//! - `daily(h) = 0.25 + 0.75·σ((h−8)/1.2)·σ((19−h)/1.2)` (σ the logistic
//!   function: a business-hours plateau), `weekly(w) = 1` Monday to Friday,
//!   `0.5` Saturday, `0.45` Sunday;
//! - `G(t) = (1 + growth_per_year)^(t/8760)`, slow growth;
//! - `z(t) = 0.7·z(t−1) + N(0.07)`, load noise that persists a few hours;
//! - `L(t) = daily(h)·weekly(w)·G(t)·e^z(t)`.
//!
//! Incidents: outside an incident one starts with probability
//! `incident_rate/1000·(0.5 + daily(h)·weekly(w))` per hour (more under
//! load), lasts 4–10 hours and has a severity `s ∈ [0.5, 1]`; `I(t)` is 1
//! during one. Its share of memory use and of the error rate builds up and
//! fades by halves: `M(t) = 0.5·M(t−1) + 0.5·I·20·s` (percentage points),
//! `E(t) = 0.5·E(t−1) + 0.5·I·(0.08 + 0.12·s)`. Incidents show in the
//! features: threads pile up, MCP connections drop, threads run slow, memory
//! climbs and errors carry into the next hour.
//!
//! Features:
//!
//! - `thread_count = max(1, round(load_scale·L(t)·(1 + 0.5·s·I)))`;
//! - `mcp_connection_count = max(1, round(load_scale·headroom/4 · G(t)^0.8 ·
//!   (1 − mcp_autoscale + mcp_autoscale·daily·weekly) · (1 − 0.4·s·I) · e^N(0.03)))`
//!   — capacity lags behind growth, and autoscaling follows the daily load;
//! - `avg_thread_duration = work_seconds·(1 + 0.3·(1 − daily(h)))·e^N(0.12)·(1 + 1.5·s·I)`
//!   seconds (heavier batch work at night);
//! - `memory_usage_percent = clamp(memory_baseline + 30·tanh(u) + M(t) + a(t), 1, 100)`
//!   with `u` the pool utilisation below and `a(t) = 0.8·a(t−1) + N(1)`;
//! - `error_rate_1h_ago` is the previous hour's `error_rate`.
//!
//! Targets, shared by every organisation, with `u = thread_count /
//! (4·mcp_connection_count)` the utilisation of the connection pool (each
//! connection serves 4 threads), `d` the thread duration, `m` the memory,
//! `e₁` the previous hour's error rate:
//!
//! - `queue(u) = 1 / (1 − 0.9·tanh(u))` — queueing-like growth as the pool
//!   fills, bounded at 10×;
//! - `pressure(m) = ((max(0, m − 70))/30)²` — memory pressure above 70 %;
//! - `latency_ms = (20 + 60·d)·queue(u)·(1 + 3·pressure(m))·(1 + 3·e₁)·e^N(0.04)`;
//! - `error_rate = min(1, (0.002 + 0.004·(queue(u) − 1) + 0.05·pressure(m)
//!   + E(t))·e^N(0.05))`;
//! - `memory_usage_percent_next_hour` is the next hour's memory;
//! - `anomaly = I(t)`.
//!
//! Latency is a function of the features with 4 % multiplicative noise
//! ([`expected_latency_ms`] is its noise-free value). The error rate and
//! next-hour memory also depend on the incident state, which the features
//! show clearly once an incident is under way (last hour's errors, slow
//! threads, a crowded pool, memory) and less clearly in its first hour or
//! after it ends; the incident terms' build-up by halves keeps those jumps
//! moderate. Values are rounded as telemetry would be (whole threads,
//! milliseconds, 0.1 %, 10⁻⁵ error rate). A warm-up of two days runs before
//! the first row so that the persistent terms start settled.

#[cfg(test)]
mod tests;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::schema::{
    OPS_FEATURES, TARGET_ANOMALY, TARGET_ERROR_RATE, TARGET_LATENCY, TARGET_MEMORY,
};
use crate::table::{Table, TableError};

/// The generated columns: [`OPS_FEATURES`], then latency, error rate,
/// next-hour memory and anomaly.
pub const COLUMNS: [&str; 11] = [
    OPS_FEATURES[0],
    OPS_FEATURES[1],
    OPS_FEATURES[2],
    OPS_FEATURES[3],
    OPS_FEATURES[4],
    OPS_FEATURES[5],
    OPS_FEATURES[6],
    TARGET_LATENCY,
    TARGET_ERROR_RATE,
    TARGET_MEMORY,
    TARGET_ANOMALY,
];

/// Most rows [`generate`] makes for one organisation.
pub const MAX_ROWS: usize = 2_000_000;

/// Threads one MCP connection serves at full utilisation.
const THREADS_PER_CONNECTION: f64 = 4.0;
/// Hours simulated before the first row.
const WARM_UP_HOURS: i64 = 48;
const HOURS_PER_YEAR: f64 = 8760.0;

/// One organisation's data-generating parameters. Its JSON form is how a
/// scenario names a member of a synthetic consortium.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrgProfile {
    /// The organisation's name.
    pub name: String,
    /// Hours of data (rows).
    pub rows: usize,
    /// Threads at the weekday business-hours peak (1–1,000,000).
    pub load_scale: f64,
    /// Pool capacity over peak load at the start (0.5–10): 1 runs the pool
    /// full at peak, 2 half full.
    pub headroom: f64,
    /// How far MCP connections follow the daily load (0 fixed pool, 1 fully).
    pub mcp_autoscale: f64,
    /// Typical thread duration in seconds, the workload mix (0.01–100).
    pub work_seconds: f64,
    /// Memory use of the idle system, % (0–90).
    pub memory_baseline: f64,
    /// Incidents per 1,000 hours at average load (0–200).
    pub incident_rate: f64,
    /// Yearly load growth, a fraction (−0.9–10).
    pub growth_per_year: f64,
}

/// Why a profile cannot be generated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SynthError {
    /// A parameter is NaN or outside its range.
    #[error("{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        /// The [`OrgProfile`] field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// More rows than [`MAX_ROWS`].
    #[error("{0} rows; at most {MAX_ROWS}")]
    TooManyRows(usize),
    /// A generated value could not be stored (not expected for a valid profile).
    #[error(transparent)]
    Table(#[from] TableError),
}

impl OrgProfile {
    /// Checks every parameter against its documented range.
    pub fn validate(&self) -> Result<(), SynthError> {
        if self.rows > MAX_ROWS {
            return Err(SynthError::TooManyRows(self.rows));
        }
        let checks: [(&'static str, f64, f64, f64); 7] = [
            ("load_scale", self.load_scale, 1.0, 1e6),
            ("headroom", self.headroom, 0.5, 10.0),
            ("mcp_autoscale", self.mcp_autoscale, 0.0, 1.0),
            ("work_seconds", self.work_seconds, 0.01, 100.0),
            ("memory_baseline", self.memory_baseline, 0.0, 90.0),
            ("incident_rate", self.incident_rate, 0.0, 200.0),
            ("growth_per_year", self.growth_per_year, -0.9, 10.0),
        ];
        for (field, value, min, max) in checks {
            // `contains` is false for NaN.
            if !(min..=max).contains(&value) {
                return Err(SynthError::OutOfRange {
                    field,
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }
}

/// `n_orgs` varied organisations named `org-00`, `org-01`, …: every third
/// (starting with the first) is small (300–1,000 rows, peak 25–60 threads),
/// the next medium (1,500–4,000 rows, peak 60–200), the next large
/// (5,000–9,000 rows, peak 200–450). Provisioning, workload, memory baseline,
/// incident rate and growth vary independently of size.
pub fn consortium(n_orgs: usize, rng: &mut impl Rng) -> Vec<OrgProfile> {
    (0..n_orgs)
        .map(|i| {
            let (rows, load_scale) = match i % 3 {
                0 => (rng.random_range(300..=1000), rng.random_range(25.0..60.0)),
                1 => (rng.random_range(1500..=4000), rng.random_range(60.0..200.0)),
                _ => (
                    rng.random_range(5000..=9000),
                    rng.random_range(200.0..450.0),
                ),
            };
            OrgProfile {
                name: format!("org-{i:02}"),
                rows,
                load_scale,
                headroom: rng.random_range(1.1..2.2),
                mcp_autoscale: rng.random_range(0.0..0.6),
                work_seconds: 0.2 * 15f64.powf(rng.random::<f64>()),
                memory_baseline: rng.random_range(25.0..55.0),
                incident_rate: rng.random_range(2.0..12.0),
                growth_per_year: rng.random_range(0.0..0.4),
            }
        })
        .collect()
}

/// `profile.rows` hours of data, in time order, with the columns [`COLUMNS`].
pub fn generate(profile: &OrgProfile, rng: &mut impl Rng) -> Result<Table, SynthError> {
    profile.validate()?;
    let mut table = Table::new(COLUMNS)?;
    let mut world = World::new(profile);
    // Hour t's row needs hour t+1's memory, so the simulation runs one
    // hour ahead of the rows it writes.
    for t in -WARM_UP_HOURS..0 {
        world.step(t, rng);
    }
    let mut current = world.step(0, rng);
    for t in 0..profile.rows as i64 {
        let next = world.step(t + 1, rng);
        table.push_row(&current.row(next.memory))?;
        current = next;
    }
    Ok(table)
}

/// What one hour looked like.
#[derive(Clone, Copy, Debug)]
struct Hour {
    hour: f64,
    day: f64,
    threads: f64,
    duration: f64,
    connections: f64,
    error_rate_1h_ago: f64,
    memory: f64,
    latency: f64,
    error_rate: f64,
    incident: bool,
}

impl Hour {
    fn row(&self, memory_next_hour: f64) -> [f32; 11] {
        [
            self.hour,
            self.day,
            self.threads,
            self.duration,
            self.connections,
            self.error_rate_1h_ago,
            self.memory,
            self.latency,
            self.error_rate,
            memory_next_hour,
            if self.incident { 1.0 } else { 0.0 },
        ]
        .map(|v| v as f32)
    }
}

/// The persistent state of one organisation's simulation.
#[derive(Debug)]
struct World<'a> {
    profile: &'a OrgProfile,
    load_noise: f64,
    memory_noise: f64,
    /// The incident's share of the error rate and of memory use: both build
    /// up over the first hours of an incident and fade after it.
    incident_errors: f64,
    incident_memory: f64,
    error_rate: f64,
    /// Hours left in the current incident, and its severity.
    incident: Option<(u32, f64)>,
}

impl<'a> World<'a> {
    fn new(profile: &'a OrgProfile) -> Self {
        Self {
            profile,
            load_noise: 0.0,
            memory_noise: 0.0,
            incident_errors: 0.0,
            incident_memory: 0.0,
            error_rate: 0.005,
            incident: None,
        }
    }

    /// Advances to hour `t` (negative during warm-up) and observes it.
    fn step(&mut self, t: i64, rng: &mut impl Rng) -> Hour {
        let p = self.profile;
        let hour = t.rem_euclid(24);
        let day = t.div_euclid(24).rem_euclid(7);
        let calendar = daily(hour as f64) * weekly(day);
        let growth = (1.0 + p.growth_per_year).powf(t.max(0) as f64 / HOURS_PER_YEAR);

        self.load_noise = 0.7 * self.load_noise + normal(rng, 0.07);
        self.memory_noise = 0.8 * self.memory_noise + normal(rng, 1.0);
        let start_roll = rng.random::<f64>();
        let duration_roll = rng.random_range(4..=10u32);
        let severity_roll = rng.random_range(0.5..=1.0);
        self.incident = match self.incident {
            Some((left, s)) if left > 1 => Some((left - 1, s)),
            _ if start_roll < p.incident_rate / 1000.0 * (0.5 + calendar) => {
                Some((duration_roll, severity_roll))
            }
            _ => None,
        };
        let (incident, s) = match self.incident {
            Some((_, s)) => (1.0, s),
            None => (0.0, 0.0),
        };
        self.incident_errors = 0.5 * self.incident_errors + 0.5 * incident * (0.08 + 0.12 * s);
        self.incident_memory = 0.5 * self.incident_memory + 0.5 * incident * 20.0 * s;

        let load = calendar * growth * self.load_noise.exp();
        let threads = (p.load_scale * load * (1.0 + 0.5 * s * incident))
            .round()
            .max(1.0);
        let pool = p.load_scale * p.headroom / THREADS_PER_CONNECTION
            * growth.powf(0.8)
            * (1.0 - p.mcp_autoscale + p.mcp_autoscale * calendar);
        let connections = (pool * (1.0 - 0.4 * s * incident) * normal(rng, 0.03).exp())
            .round()
            .max(1.0);
        let duration = round_to(
            p.work_seconds
                * (1.0 + 0.3 * (1.0 - daily(hour as f64)))
                * normal(rng, 0.12).exp()
                * (1.0 + 1.5 * s * incident),
            3,
        )
        .max(1e-3);
        let utilisation = threads / (THREADS_PER_CONNECTION * connections);
        let memory = round_to(
            (p.memory_baseline
                + 30.0 * utilisation.tanh()
                + self.incident_memory
                + self.memory_noise)
                .clamp(1.0, 100.0),
            1,
        );

        let error_rate_1h_ago = self.error_rate;
        let latency = round_to(
            truth::latency_ms(duration, utilisation, memory, error_rate_1h_ago)
                * normal(rng, 0.04).exp(),
            1,
        );
        let error_rate = round_to(
            (truth::error_rate(utilisation, memory, self.incident_errors)
                * normal(rng, 0.05).exp())
            .min(1.0),
            5,
        );
        self.error_rate = error_rate;

        Hour {
            hour: hour as f64,
            day: day as f64,
            threads,
            duration,
            connections,
            error_rate_1h_ago,
            memory,
            latency,
            error_rate,
            incident: incident > 0.0,
        }
    }
}

/// The noise-free latency (ms) the generator draws around, for one row of
/// features in [`OPS_FEATURES`] order: the best any model can predict. Tests
/// use it as an oracle, benchmarks as the ceiling of R².
pub fn expected_latency_ms(features: &[f32; 7]) -> f64 {
    let [
        _,
        _,
        threads,
        duration,
        connections,
        error_rate_1h_ago,
        memory,
    ] = features.map(f64::from);
    let utilisation = threads.max(0.0) / (THREADS_PER_CONNECTION * connections.max(1.0));
    truth::latency_ms(duration, utilisation, memory, error_rate_1h_ago)
}

/// The shared ground truth: the same for every organisation.
mod truth {
    /// Queueing-like slowdown of a pool at utilisation `u`, 1× to 10×.
    pub(super) fn queue(u: f64) -> f64 {
        1.0 / (1.0 - 0.9 * u.tanh())
    }

    /// Memory pressure: 0 up to 70 %, 1 at 100 %.
    pub(super) fn pressure(memory: f64) -> f64 {
        ((memory - 70.0).max(0.0) / 30.0).powi(2)
    }

    pub(super) fn latency_ms(duration: f64, u: f64, memory: f64, error_rate_1h_ago: f64) -> f64 {
        (20.0 + 60.0 * duration)
            * queue(u)
            * (1.0 + 3.0 * pressure(memory))
            * (1.0 + 3.0 * error_rate_1h_ago)
    }

    pub(super) fn error_rate(u: f64, memory: f64, incident_errors: f64) -> f64 {
        0.002 + 0.004 * (queue(u) - 1.0) + 0.05 * pressure(memory) + incident_errors
    }
}

/// Business-hours plateau: 0.25 at night, ~1 from 9:00 to 18:00.
fn daily(hour: f64) -> f64 {
    let logistic = |x: f64| 1.0 / (1.0 + (-x).exp());
    0.25 + 0.75 * logistic((hour - 8.0) / 1.2) * logistic((19.0 - hour) / 1.2)
}

/// Weekend dip.
fn weekly(day: i64) -> f64 {
    match day {
        5 => 0.5,
        6 => 0.45,
        _ => 1.0,
    }
}

/// A normal draw with mean 0 (Box–Muller; one uniform pair per draw).
fn normal(rng: &mut impl Rng, sd: f64) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `value` rounded to `decimals` decimal places.
fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}
