//! The SVG plot of a sweep: throughput (top) and latency (bottom) against
//! pool size, one latency unit (µs) everywhere.
//!
//! Pool sizes are evenly spaced categories (1, 2, 4, ... or any list), so a
//! one-point sweep is one centred column rather than a degenerate axis.
//! Top: measured requests/s, the offered rate if any, the Little's-law
//! expectation dashed for `--delay`/`--spin` runs, "served N/M" under a pool
//! that left clients unserved, and the recommended pool ringed. Bottom, on
//! a logarithmic µs axis (an overloaded pool's seconds would otherwise
//! flatten a healthy pool's milliseconds and the target line to the
//! floor): the server's service-time p99 and queue-wait p99 as two bars
//! side by side, each rising from the axis floor (stacking misleads on a
//! log axis), the clients' p99 as a line, and the target p99 dashed. The
//! run's parameters wrap under the title. Fonts are 15-22 px on a
//! 1000 × 800 canvas, so a PNG converted at the default size is readable.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use wharf::bench::{self, human_rate, human_us};

use super::report::JsonReport;

const SERVICE: RGBColor = RGBColor(70, 130, 180);
const QUEUE: RGBColor = RGBColor(240, 160, 60);
const CLIENT: RGBColor = RGBColor(200, 30, 30);
const THROUGHPUT: RGBColor = RGBColor(30, 60, 160);
const MARK: RGBColor = RGBColor(20, 150, 60);

/// Draws the plot of `report`'s pool sizes to `path`.
pub fn draw(path: &Path, report: &JsonReport<'_>) -> Result<(), Box<dyn std::error::Error>> {
    let points: Vec<_> = report
        .results
        .iter()
        .filter(|p| p.workers.is_some())
        .collect();
    let n = points.len();
    if n == 0 {
        return Err("nothing to plot (no pool sizes measured)".into());
    }
    let options = report.options;
    let pools: Vec<usize> = points.iter().map(|p| p.workers.unwrap_or(0)).collect();
    let recommended = report
        .recommendation
        .and_then(|r| r.workers)
        .and_then(|w| pools.iter().position(|&p| p == w));
    let x = |i: usize| i as f64;
    let x_range = || -0.5..n as f64 - 0.5;
    let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let lines = subtitle(report);
    let (head, body) = root.split_vertically(48 + 20 * lines.len() as u32);
    head.draw(&Text::new(
        "wharf bench: throughput and latency by pool size",
        (20, 10),
        ("sans-serif", 24).into_font().style(FontStyle::Bold),
    ))?;
    for (i, line) in lines.iter().enumerate() {
        head.draw(&Text::new(
            line.as_str(),
            (20, 42 + 20 * i as i32),
            ("sans-serif", 15),
        ))?;
    }
    let (top, bottom) = body.split_vertically(body.dim_in_pixel().1 / 2);

    // Throughput.
    let law: Vec<Option<f64>> = pools
        .iter()
        .map(|&w| bench::littles_law(options, w))
        .collect();
    let y_max = points
        .iter()
        .map(|p| p.requests_per_sec.max(p.offered_rps.unwrap_or(0.0)))
        .chain(law.iter().flatten().copied())
        .fold(0.0, f64::max)
        * 1.15
        + 1.0;
    let mut chart = ChartBuilder::on(&top)
        .margin(12)
        .margin_right(LEGEND)
        .x_label_area_size(45)
        .y_label_area_size(95)
        .build_cartesian_2d(x_range(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .bold_line_style(BLACK.mix(0.18))
        .light_line_style(BLACK.mix(0.05))
        .x_desc("workers (pool size)")
        .y_desc("throughput (requests/s)")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_labels(0)
        .y_label_formatter(&|y| human_rate(*y))
        .draw()?;
    x_ticks(&root, |i| chart.backend_coord(&(x(i), 0.0)), &pools)?;
    let mut keys = vec![(Key::Line(THROUGHPUT), "measured req/s".to_owned())];
    let measured: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| (x(i), p.requests_per_sec))
        .collect();
    chart.draw_series(LineSeries::new(
        measured.clone(),
        THROUGHPUT.stroke_width(2),
    ))?;
    chart.draw_series(
        measured
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 5, THROUGHPUT.filled())),
    )?;
    if let Some(rate) = options.rate {
        keys.push((
            Key::Dashed(RGBColor(128, 128, 128)),
            format!("offered ({} req/s)", human_rate(rate)),
        ));
        chart.draw_series(DashedLineSeries::new(
            [(-0.5, rate), (n as f64 - 0.5, rate)],
            4,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))?;
    }
    let expected: Vec<(f64, f64)> = law
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|l| (x(i), l)))
        .collect();
    if !expected.is_empty() {
        keys.push((Key::Dashed(MARK), "Little's law (expected)".to_owned()));
        chart.draw_series(DashedLineSeries::new(expected, 8, 5, MARK.stroke_width(2)))?;
    }
    // Pools that left clients waiting.
    for (i, p) in points.iter().enumerate() {
        if p.clients_served < p.clients {
            chart.draw_series(std::iter::once(Text::new(
                format!("served {}/{}", p.clients_served, p.clients),
                (x(i), p.requests_per_sec + y_max * 0.03),
                ("sans-serif", 14)
                    .into_font()
                    .color(&CLIENT)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))?;
        }
    }
    if let Some(i) = recommended {
        keys.push((Key::Ring, format!("recommended: {} workers", pools[i])));
        let y = points[i].requests_per_sec;
        chart.draw_series(std::iter::once(Circle::new(
            (x(i), y),
            11,
            MARK.stroke_width(3),
        )))?;
    }
    legend(&root, chart.plotting_area(), &keys)?;

    // Latency, log scale: server service time and queue wait side by side,
    // client p99 line, target line.
    let server = |p: &wharf::bench::BenchPoint| {
        p.server
            .map(|s| (s.service.p99_us as f64, s.queue_wait.p99_us as f64))
    };
    let target = report
        .recommendation
        .and_then(|r| r.target_p99_us)
        .map(|t| t as f64);
    let values: Vec<f64> = points
        .iter()
        .flat_map(|p| {
            let (service, queue) = server(p).unwrap_or((0.0, 0.0));
            [p.p99_us as f64, service, queue]
        })
        .chain(target)
        .filter(|&v| v > 0.0)
        .collect();
    let (floor, ceiling) = log_range(&values);
    let clamp = |v: f64| v.clamp(floor, ceiling);
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .margin_right(LEGEND)
        .x_label_area_size(45)
        .y_label_area_size(95)
        .build_cartesian_2d(x_range(), (floor..ceiling).log_scale())?;
    chart
        .configure_mesh()
        .bold_line_style(BLACK.mix(0.18))
        .light_line_style(BLACK.mix(0.05))
        .x_desc("workers (pool size)")
        .y_desc("latency p99 (µs), log scale")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_labels(0)
        .y_label_formatter(&|y| human_rate(*y))
        .draw()?;
    x_ticks(&root, |i| chart.backend_coord(&(x(i), floor)), &pools)?;
    let mut keys = Vec::new();
    if points.iter().any(|p| p.server.is_some()) {
        // Bars at most 50 px wide each, so a one-point sweep's are not slabs.
        let column = chart.plotting_area().dim_in_pixel().0 as f64 / n as f64;
        let (gap, bar) = (0.03, (50.0 / column).min(0.27));
        let bars = |left: bool, color: RGBColor| {
            points.iter().enumerate().filter_map(move |(i, p)| {
                let (service, queue) = server(p)?;
                let (value, from, to) = if left {
                    (service, x(i) - gap - bar, x(i) - gap)
                } else {
                    (queue, x(i) + gap, x(i) + gap + bar)
                };
                // At or under the floor: a stub on the axis, not nothing.
                let top = if value > floor {
                    clamp(value)
                } else {
                    floor * 1.15
                };
                Some(Rectangle::new([(from, floor), (to, top)], color.filled()))
            })
        };
        chart.draw_series(bars(true, SERVICE))?;
        keys.push((Key::Bar(SERVICE), "server: service time p99".to_owned()));
        chart.draw_series(bars(false, QUEUE))?;
        keys.push((Key::Bar(QUEUE), "server: queue wait p99".to_owned()));
    }
    if let Some(target) = target {
        keys.push((
            Key::Dashed(RGBColor(77, 77, 77)),
            format!("target p99 ({})", human_us(target)),
        ));
        chart.draw_series(DashedLineSeries::new(
            [(-0.5, target), (n as f64 - 0.5, target)],
            8,
            5,
            BLACK.mix(0.7).stroke_width(2),
        ))?;
    }
    let client: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| (x(i), clamp(p.p99_us as f64)))
        .collect();
    chart.draw_series(LineSeries::new(client.clone(), CLIENT.stroke_width(2)))?;
    keys.push((Key::Line(CLIENT), "clients: p99 (end to end)".to_owned()));
    chart.draw_series(
        client
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 5, CLIENT.filled())),
    )?;
    if let Some(i) = recommended {
        keys.push((Key::Ring, format!("recommended: {} workers", pools[i])));
        chart.draw_series(std::iter::once(Circle::new(
            client[i],
            11,
            MARK.stroke_width(3),
        )))?;
    }
    legend(&root, chart.plotting_area(), &keys)?;
    if points.iter().any(|p| p.server.is_some()) {
        let (px, py) = chart.plotting_area().get_base_pixel();
        let (w, _) = chart.plotting_area().dim_in_pixel();
        let note = ("sans-serif", 13).into_font().color(&BLACK.mix(0.65));
        for (i, line) in [
            "Bars: the server's p99s side by",
            "side, not stacked; each rises",
            &format!("from {} µs (log axis).", human_rate(floor)),
        ]
        .iter()
        .enumerate()
        {
            root.draw(&Text::new(
                *line,
                (
                    px + w as i32 + 15,
                    py + 30 + 22 * keys.len() as i32 + 17 * i as i32,
                ),
                note.clone(),
            ))?;
        }
    }
    root.present()?;
    Ok(())
}

/// The width kept right of each chart for its legend, which then never
/// hides a point or a bar.
const LEGEND: u32 = 215;

/// A legend entry's sample.
enum Key {
    Line(RGBColor),
    Dashed(RGBColor),
    Bar(RGBColor),
    Ring,
}

/// The legend, boxed in the margin right of `plot` (a chart's plotting
/// area), top-aligned with it.
fn legend<X, Y>(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    plot: &DrawingArea<SVGBackend<'_>, Cartesian2d<X, Y>>,
    keys: &[(Key, String)],
) -> Result<(), Box<dyn std::error::Error>>
where
    X: Ranged,
    Y: Ranged,
{
    let (px, py) = plot.get_base_pixel();
    let (w, _) = plot.dim_in_pixel();
    let (left, top) = (px + w as i32 + 10, py);
    let row = 22;
    root.draw(&Rectangle::new(
        [
            (left, top),
            (
                left + LEGEND as i32 - 14,
                top + 10 + row * keys.len() as i32,
            ),
        ],
        BLACK.mix(0.3),
    ))?;
    let font = ("sans-serif", 14)
        .into_font()
        .into_text_style(root)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (key, label)) in keys.iter().enumerate() {
        let (x, y) = (left + 8, top + 5 + row / 2 + row * i as i32);
        match key {
            Key::Line(color) => root.draw(&PathElement::new(
                [(x, y), (x + 22, y)],
                color.stroke_width(2),
            ))?,
            Key::Dashed(color) => {
                for dash in [0, 9, 18] {
                    let end = (dash + 5).min(22);
                    root.draw(&PathElement::new(
                        [(x + dash, y), (x + end, y)],
                        color.stroke_width(2),
                    ))?;
                }
            }
            Key::Bar(color) => root.draw(&Rectangle::new(
                [(x, y - 6), (x + 22, y + 6)],
                color.filled(),
            ))?,
            Key::Ring => root.draw(&Circle::new((x + 11, y), 7, MARK.stroke_width(2)))?,
        }
        root.draw(&Text::new(label.as_str(), (x + 30, y), font.clone()))?;
    }
    Ok(())
}

/// The latency axis, in µs: from 10 µs (faster is drawn at the floor) to
/// the power of ten above the largest value with some headroom, at least
/// three decades, so every decade, the top one included, has its labelled
/// line.
fn log_range(values: &[f64]) -> (f64, f64) {
    const FLOOR: f64 = 10.0;
    let max = values.iter().copied().fold(0.0, f64::max);
    let ceiling = 10f64.powf((max * 1.3).max(FLOOR * 1000.0).log10().ceil());
    (FLOOR, ceiling)
}

/// The pool sizes under their columns, drawn here rather than by the mesh:
/// its tick algorithm picks round numbers, not categories. `at(i)` is the
/// pixel where column `i` meets the x axis.
fn x_ticks(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    at: impl Fn(usize) -> (i32, i32),
    pools: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    let style = ("sans-serif", 15)
        .into_font()
        .into_text_style(root)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, workers) in pools.iter().enumerate() {
        let (px, py) = at(i);
        root.draw(&Text::new(workers.to_string(), (px, py + 7), style.clone()))?;
        root.draw(&PathElement::new([(px, py), (px, py + 5)], BLACK))?;
    }
    Ok(())
}

/// The run's parameters, wrapped to fit the canvas: the load first, then
/// the build and machine on a line of their own.
fn subtitle(report: &JsonReport<'_>) -> Vec<String> {
    let o = report.options;
    let mut parts = vec![format!("{} clients", o.clients)];
    match o.rate {
        Some(rate) => parts.push(format!("open loop at {} req/s", human_rate(rate))),
        None => parts.push("closed loop".to_owned()),
    }
    if o.idle > 0 {
        parts.push(format!("{} idle", o.idle));
    }
    if !o.delay.is_zero() {
        parts.push(format!("delay {}", human_us(o.delay.as_micros() as f64)));
    }
    if !o.spin.is_zero() {
        parts.push(format!("spin {}", human_us(o.spin.as_micros() as f64)));
    }
    parts.push(format!("payload {} B", o.payload));
    parts.push(format!("{} s per point", o.duration.as_secs_f64()));
    let mut lines = wrap(&parts);
    lines.extend(wrap(&[
        format!("wharf {}", report.version),
        format!("{} CPUs", report.machine.cpus),
        format!("Linux {}", report.machine.kernel),
        report.timestamp.clone(),
    ]));
    lines
}

/// `parts` joined with " · " into lines of at most ~120 characters, which
/// at 15 px fit the 960 px the canvas leaves.
fn wrap(parts: &[String]) -> Vec<String> {
    const WIDTH: usize = 120;
    let mut lines: Vec<String> = Vec::new();
    for part in parts {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 3 + part.chars().count() <= WIDTH => {
                line.push_str(" · ");
                line.push_str(part);
            }
            _ => lines.push(part.clone()),
        }
    }
    lines
}
