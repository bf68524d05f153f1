//! Plots of a sweep, drawn with plotters as SVG and PNG.
//!
//! Text needs a TrueType font. plotters is built with its pure-Rust
//! `ab_glyph` renderer (no system libraries); the font file is looked up at
//! run time: `$MC_SIM_FONT`, then the usual DejaVu / Liberation paths. With
//! no font the sweep still writes its tables and says why the plots are
//! missing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

use crate::Error;
use crate::sweep::Row;

/// Where fonts usually are.
const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
];

/// Registers a font as "sans-serif" once; the error says what was tried.
fn font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("MC_SIM_FONT")
            .into_iter()
            .chain(FONT_PATHS.iter().map(ToString::to_string))
            .collect();
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no TrueType font found for the plots (tried {}); set MC_SIM_FONT=/path/to/font.ttf",
            candidates.join(", ")
        ))
    })
    .clone()
}

/// One line of a chart.
struct Line<'a> {
    label: &'a str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    lines: &[Line<'_>],
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let xs = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
    let x_min = xs.clone().fold(f64::INFINITY, f64::min).max(1.0);
    let x_max = xs.fold(1.0, f64::max);
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("nodes (log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(err)?;
    for line in lines {
        let color = line.color;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(line.label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 4, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Draws `lines` to `<dir>/<stem>.svg` and `<dir>/<stem>.png`.
fn both(
    dir: &Path,
    stem: &str,
    title: &str,
    y_desc: &str,
    lines: &[Line<'_>],
) -> Result<Vec<PathBuf>, Error> {
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let failed = |path: &Path, detail: String| Error::Plot {
        path: path.display().to_string(),
        detail,
    };
    chart(
        &SVGBackend::new(&svg, (900, 560)).into_drawing_area(),
        title,
        y_desc,
        lines,
    )
    .map_err(|e| failed(&svg, e))?;
    chart(
        &BitMapBackend::new(&png, (900, 560)).into_drawing_area(),
        title,
        y_desc,
        lines,
    )
    .map_err(|e| failed(&png, e))?;
    Ok(vec![svg, png])
}

/// Convergence time and bytes per node per second against cluster size.
pub fn sweep_plots(dir: &Path, rows: &[Row]) -> Result<Vec<PathBuf>, Error> {
    font().map_err(|detail| Error::Plot {
        path: dir.display().to_string(),
        detail,
    })?;
    let x = |r: &Row| r.nodes as f64;
    let convergence = [
        Line {
            label: "convergence after heal (ms)",
            color: RGBColor(31, 119, 180),
            points: rows
                .iter()
                .filter_map(|r| r.convergence_ms.map(|c| (x(r), c)))
                .collect(),
        },
        Line {
            label: "bound: 2 sync intervals + max one-way latency (ms)",
            color: RGBColor(214, 39, 40),
            points: rows.iter().map(|r| (x(r), r.bound_ms)).collect(),
        },
        Line {
            label: "dissemination p99 outside faults (ms)",
            color: RGBColor(44, 160, 44),
            points: rows.iter().map(|r| (x(r), r.p99_ms)).collect(),
        },
    ];
    let bytes = [
        Line {
            label: "all traffic",
            color: RGBColor(148, 103, 189),
            points: rows
                .iter()
                .map(|r| (x(r), r.bytes_per_node_per_s))
                .collect(),
        },
        Line {
            label: "gossip (messages, IHAVE/IWANT, GRAFT/PRUNE)",
            color: RGBColor(255, 127, 14),
            points: rows
                .iter()
                .map(|r| (x(r), r.gossip_bytes_per_node_per_s))
                .collect(),
        },
        Line {
            label: "anti-entropy sync (point to point)",
            color: RGBColor(23, 190, 207),
            points: rows
                .iter()
                .map(|r| (x(r), r.sync_bytes_per_node_per_s))
                .collect(),
        },
    ];
    let mut files = both(
        dir,
        "convergence",
        "Convergence after a partition heals",
        "milliseconds",
        &convergence,
    )?;
    files.extend(both(
        dir,
        "bytes",
        "Bytes sent per node per second",
        "bytes / node / s",
        &bytes,
    )?);
    Ok(files)
}
