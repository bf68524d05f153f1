use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

use super::*;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn profile(name: &str, rows: usize, load_scale: f64) -> OrgProfile {
    OrgProfile {
        name: name.into(),
        rows,
        load_scale,
        headroom: 1.4,
        mcp_autoscale: 0.3,
        work_seconds: 0.8,
        memory_baseline: 40.0,
        incident_rate: 8.0,
        growth_per_year: 0.2,
    }
}

fn col(table: &Table, name: &str) -> Vec<f64> {
    table
        .column(name)
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

/// Mean of `values` on the rows where `keep` holds.
fn mean_where(values: &[f64], keep: impl Fn(usize) -> bool) -> f64 {
    mean((0..values.len()).filter(|&i| keep(i)).map(|i| values[i]))
}

fn r2(y: &[f64], pred: &[f64]) -> f64 {
    let m = mean(y.iter().copied());
    let ss_res: f64 = y.iter().zip(pred).map(|(a, b)| (a - b).powi(2)).sum();
    let ss_tot: f64 = y.iter().map(|a| (a - m).powi(2)).sum();
    1.0 - ss_res / ss_tot
}

#[test]
fn same_seed_same_data() {
    let orgs = consortium(4, &mut rng(7));
    assert_eq!(orgs, consortium(4, &mut rng(7)));
    assert_ne!(orgs, consortium(4, &mut rng(8)));
    let a = generate(&orgs[0], &mut rng(1)).unwrap();
    let b = generate(&orgs[0], &mut rng(1)).unwrap();
    let c = generate(&orgs[0], &mut rng(2)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), orgs[0].rows);
    assert_eq!(a.columns(), COLUMNS.map(String::from));
}

#[test]
fn consortium_mixes_sizes() {
    let orgs = consortium(12, &mut rng(3));
    let small = orgs.iter().filter(|o| o.rows <= 1000).count();
    assert_eq!(small, 4);
    assert!(orgs.iter().any(|o| o.rows >= 5000));
    for o in &orgs {
        o.validate().unwrap();
    }
    assert_eq!(orgs[11].name, "org-11");
}

#[test]
fn load_peaks_in_business_hours_and_dips_at_weekends() {
    let table = generate(&profile("p", 24 * 7 * 8, 100.0), &mut rng(1)).unwrap();
    let threads = col(&table, "thread_count");
    let hour = col(&table, "hour_of_day");
    let day = col(&table, "day_of_week");
    let at = |h: f64| mean_where(&threads, |i| hour[i] == h && day[i] < 5.0);
    assert!(
        at(14.0) > 2.5 * at(3.0),
        "14:00 {} vs 03:00 {}",
        at(14.0),
        at(3.0)
    );
    let weekday = mean_where(&threads, |i| day[i] < 5.0);
    let weekend = mean_where(&threads, |i| day[i] >= 5.0);
    assert!(weekday > 1.6 * weekend, "{weekday} vs {weekend}");
    // Rows are hours in order, starting Monday 00:00.
    assert_eq!(&hour[..3], &[0.0, 1.0, 2.0]);
    assert_eq!(day[24 * 5], 5.0);
}

#[test]
fn load_grows_over_time() {
    let mut p = profile("p", 24 * 7 * 52, 100.0);
    p.growth_per_year = 0.5;
    p.incident_rate = 0.0;
    let threads = col(&generate(&p, &mut rng(2)).unwrap(), "thread_count");
    let quarter = threads.len() / 4;
    let first = mean(threads[..quarter].iter().copied());
    let last = mean(threads[3 * quarter..].iter().copied());
    assert!(last > 1.25 * first, "{first} -> {last}");
}

#[test]
fn incidents_show_in_features_and_targets() {
    let table = generate(&profile("p", 5000, 200.0), &mut rng(4)).unwrap();
    let anomaly = col(&table, TARGET_ANOMALY);
    let share = mean(anomaly.iter().copied());
    assert!((0.01..0.15).contains(&share), "anomaly share {share}");
    let is = |i: usize| anomaly[i] == 1.0;
    let not = |i: usize| anomaly[i] == 0.0;
    for (column, factor) in [
        (TARGET_LATENCY, 2.0),
        (TARGET_ERROR_RATE, 5.0),
        ("error_rate_1h_ago", 3.0),
        ("avg_thread_duration", 1.5),
    ] {
        let values = col(&table, column);
        let (during, outside) = (mean_where(&values, is), mean_where(&values, not));
        assert!(during > factor * outside, "{column}: {during} vs {outside}");
    }
    let memory = col(&table, "memory_usage_percent");
    assert!(mean_where(&memory, is) > mean_where(&memory, not) + 8.0);
}

#[test]
fn organisations_differ_in_load() {
    let small = generate(&profile("s", 24 * 7 * 4, 40.0), &mut rng(5)).unwrap();
    let large = generate(&profile("l", 24 * 7 * 4, 400.0), &mut rng(5)).unwrap();
    let range = |t: &Table| {
        let v = col(t, "thread_count");
        let weekday: Vec<f64> = (0..v.len())
            .filter(|i| (i / 24) % 7 < 5)
            .map(|i| v[i])
            .collect();
        let max = weekday.iter().copied().fold(f64::MIN, f64::max);
        let min = weekday.iter().copied().fold(f64::MAX, f64::min);
        (min, max)
    };
    let (s_min, s_max) = range(&small);
    let (l_min, l_max) = range(&large);
    assert!(s_min >= 3.0 && s_max <= 80.0, "small {s_min}..{s_max}");
    assert!(l_min >= 60.0 && l_max >= 300.0, "large {l_min}..{l_max}");
}

#[test]
fn bad_profiles_are_refused() {
    let mut p = profile("p", 10, f64::NAN);
    assert!(matches!(
        generate(&p, &mut rng(1)),
        Err(SynthError::OutOfRange {
            field: "load_scale",
            ..
        })
    ));
    p.load_scale = 10.0;
    p.rows = MAX_ROWS + 1;
    assert_eq!(p.validate(), Err(SynthError::TooManyRows(MAX_ROWS + 1)));
    p.rows = 0;
    assert!(generate(&p, &mut rng(1)).unwrap().is_empty());
}

/// Solves `(XᵀX + λI) β = Xᵀy` by Gaussian elimination with partial pivoting.
fn least_squares(rows: &[Vec<f64>], y: &[f64]) -> Vec<f64> {
    let p = rows[0].len();
    let mut a = vec![vec![0.0; p + 1]; p];
    for (x, &t) in rows.iter().zip(y) {
        for i in 0..p {
            for j in 0..p {
                a[i][j] += x[i] * x[j];
            }
            a[i][p] += x[i] * t;
        }
    }
    for (i, row) in a.iter_mut().enumerate() {
        row[i] += 1e-9;
    }
    for col in 0..p {
        let pivot = (col..p)
            .max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))
            .unwrap();
        a.swap(col, pivot);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, &y) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * y;
                }
            }
        }
    }
    (0..p).map(|i| a[i][p] / a[i][i]).collect()
}

/// Hand-made nonlinear features of one row (not the generator's formulas).
fn basis(row: &[f32]) -> Vec<f64> {
    let r: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
    let (hour, threads, duration, connections, e1, memory) = (r[0], r[2], r[3], r[4], r[5], r[6]);
    let u = threads / connections;
    let pressure = ((memory - 70.0).max(0.0) / 30.0).powi(2);
    let angle = std::f64::consts::TAU * hour / 24.0;
    vec![
        1.0,
        duration.ln(),
        duration,
        u,
        u * u,
        u.powi(3),
        memory / 100.0,
        pressure,
        e1,
        angle.sin(),
        angle.cos(),
    ]
}

/// The signal-to-noise check the federated benchmark relies on: one model
/// fitted on pooled data predicts every organisation's later data well.
#[test]
fn shared_ground_truth_is_learnable() {
    let orgs = consortium(10, &mut rng(11));
    let latency_col = COLUMNS.iter().position(|&c| c == TARGET_LATENCY).unwrap();
    let mut train_x = Vec::new();
    let mut train_y = Vec::new();
    let mut tests = Vec::new();
    for (k, org) in orgs.iter().enumerate() {
        let table = generate(org, &mut rng(100 + k as u64)).unwrap();
        let rows: Vec<Vec<f32>> = table.rows().map(<[f32]>::to_vec).collect();
        let cut = rows.len() * 4 / 5;
        for row in &rows[..cut] {
            train_x.push(basis(row));
            train_y.push(f64::from(row[latency_col]).ln());
        }
        tests.push((org, rows[cut..].to_vec()));
    }
    let beta = least_squares(&train_x, &train_y);
    let predict = |row: &[f32]| {
        basis(row)
            .iter()
            .zip(&beta)
            .map(|(x, b)| x * b)
            .sum::<f64>()
            .exp()
    };
    let mut all_y = Vec::new();
    let mut all_pred = Vec::new();
    for (org, rows) in &tests {
        let y: Vec<f64> = rows.iter().map(|r| f64::from(r[latency_col])).collect();
        let pred: Vec<f64> = rows.iter().map(|r| predict(r)).collect();
        // The generator's own formula without noise: the ceiling any model
        // can reach, which must leave room above 0.9.
        let truth: Vec<f64> = rows
            .iter()
            .map(|r| expected_latency_ms(r[..7].try_into().unwrap()))
            .collect();
        let (fit, ceiling) = (r2(&y, &pred), r2(&y, &truth));
        eprintln!(
            "{}: {} test rows, OLS R² {fit:.3}, noise ceiling {ceiling:.3}",
            org.name,
            y.len()
        );
        assert!(ceiling >= 0.95, "{}: ceiling {ceiling}", org.name);
        assert!(fit >= 0.8, "{}: OLS R² {fit}", org.name);
        all_y.extend(y);
        all_pred.extend(pred);
    }
    let pooled = r2(&all_y, &all_pred);
    eprintln!("pooled OLS R² {pooled:.3}");
    assert!(pooled >= 0.85, "pooled OLS R² {pooled}");
}

/// Pooled OLS on [`basis`] for `target`; R² on each org's last 20 %.
fn pooled_fit(target: &str, seed: u64) -> Vec<(String, f64, Vec<f64>, Vec<f64>)> {
    let orgs = consortium(10, &mut rng(seed));
    let t = COLUMNS.iter().position(|&c| c == target).unwrap();
    let (mut xs, mut ys, mut tests) = (Vec::new(), Vec::new(), Vec::new());
    for (k, org) in orgs.iter().enumerate() {
        let table = generate(org, &mut rng(seed * 1000 + k as u64)).unwrap();
        let rows: Vec<Vec<f32>> = table.rows().map(<[f32]>::to_vec).collect();
        let cut = rows.len() * 4 / 5;
        for row in &rows[..cut] {
            xs.push(basis(row));
            ys.push(f64::from(row[t]));
        }
        tests.push((org.name.clone(), rows[cut..].to_vec()));
    }
    let beta = least_squares(&xs, &ys);
    tests
        .into_iter()
        .map(|(name, rows)| {
            let y: Vec<f64> = rows.iter().map(|r| f64::from(r[t])).collect();
            let pred: Vec<f64> = rows
                .iter()
                .map(|r| basis(r).iter().zip(&beta).map(|(x, b)| x * b).sum())
                .collect();
            (name, r2(&y, &pred), y, pred)
        })
        .collect()
}

#[test]
#[ignore = "diagnostic"]
fn report_other_targets_learnability() {
    for target in [TARGET_ERROR_RATE, TARGET_MEMORY, TARGET_ANOMALY] {
        let fits = pooled_fit(target, 11);
        let scores: Vec<String> = fits
            .iter()
            .map(|(n, r, _, _)| format!("{n} {r:.3}"))
            .collect();
        eprintln!("{target}: {}", scores.join(", "));
        if target == TARGET_ANOMALY {
            let (mut tp, mut fp, mut fneg) = (0, 0, 0);
            for (_, _, y, p) in &fits {
                for (a, b) in y.iter().zip(p) {
                    match (*a > 0.5, *b > 0.5) {
                        (true, true) => tp += 1,
                        (false, true) => fp += 1,
                        (true, false) => fneg += 1,
                        _ => {}
                    }
                }
            }
            eprintln!("anomaly linear-probability: tp {tp} fp {fp} fn {fneg}");
        }
    }
}
