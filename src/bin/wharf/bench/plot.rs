//! The SVG plot of a sweep: throughput (top) and latency (bottom) against
//! pool size, one latency unit (µs) everywhere.
//!
//! Pool sizes are evenly spaced categories (1, 2, 4, ... or any list), so a
//! one-point sweep is one centred column rather than a degenerate axis.
//! Top: measured requests/s, the offered rate if any, the Little's-law
//! expectation dashed for `--delay`/`--spin` runs, "served N/M" under a pool
//! that left clients unserved, and the recommended pool ringed. Bottom:
//! the server's queue-wait p99 stacked on its service-time p99 (bars,
//! shaded apart), and the clients' p99 as a line. Fonts are 15-22 px on a
//! 1000 × 800 canvas, so a PNG converted at the default size is readable.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use wharf::bench::{self, human_rate, human_us};

use super::JsonReport;

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
    let (head, body) = root.split_vertically(70);
    head.draw(&Text::new(
        "wharf bench: throughput and latency by pool size",
        (20, 10),
        ("sans-serif", 24).into_font().style(FontStyle::Bold),
    ))?;
    head.draw(&Text::new(subtitle(report), (20, 42), ("sans-serif", 15)))?;
    let (top, bottom) = body.split_vertically(355);

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
    x_ticks(&root, &chart, &pools)?;
    let measured: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| (x(i), p.requests_per_sec))
        .collect();
    chart
        .draw_series(LineSeries::new(
            measured.clone(),
            THROUGHPUT.stroke_width(2),
        ))?
        .label("measured req/s")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], THROUGHPUT.stroke_width(2)));
    chart.draw_series(
        measured
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 5, THROUGHPUT.filled())),
    )?;
    if let Some(rate) = options.rate {
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.5, rate), (n as f64 - 0.5, rate)],
                4,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))?
            .label(format!("offered ({} req/s)", human_rate(rate)))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    let expected: Vec<(f64, f64)> = law
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|l| (x(i), l)))
        .collect();
    if !expected.is_empty() {
        chart
            .draw_series(DashedLineSeries::new(expected, 8, 5, MARK.stroke_width(2)))?
            .label("Little's law (expected)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], MARK.stroke_width(2)));
    }
    // Pools that left clients waiting.
    for (i, p) in points.iter().enumerate() {
        if p.clients_served < p.clients {
            chart.draw_series(std::iter::once(Text::new(
                format!("served {}/{}", p.clients_served, p.clients),
                (x(i), p.requests_per_sec + y_max * 0.04),
                ("sans-serif", 14).into_font().color(&CLIENT),
            )))?;
        }
    }
    if let Some(i) = recommended {
        let y = points[i].requests_per_sec;
        chart
            .draw_series(std::iter::once(Circle::new(
                (x(i), y),
                11,
                MARK.stroke_width(3),
            )))?
            .label(format!("recommended: {} workers", pools[i]))
            .legend(|(x, y)| Circle::new((x + 10, y), 6, MARK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;

    // Latency: server queue wait stacked on service time, client p99 line.
    let stacked = |p: &wharf::bench::BenchPoint| {
        p.server.map_or((0.0, 0.0), |s| {
            (s.service.p99_us as f64, s.queue_wait.p99_us as f64)
        })
    };
    let y_max = points
        .iter()
        .map(|p| {
            let (service, queue) = stacked(p);
            (p.p99_us as f64).max(service + queue)
        })
        .chain(
            report
                .recommendation
                .and_then(|r| r.target_p99_us)
                .map(|t| t as f64),
        )
        .fold(0.0, f64::max)
        * 1.15
        + 1.0;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(95)
        .build_cartesian_2d(x_range(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .bold_line_style(BLACK.mix(0.18))
        .light_line_style(BLACK.mix(0.05))
        .x_desc("workers (pool size)")
        .y_desc("latency p99 (µs)")
        .axis_desc_style(("sans-serif", 17))
        .label_style(("sans-serif", 15))
        .x_labels(0)
        .y_label_formatter(&|y| human_rate(*y))
        .draw()?;
    x_ticks(&root, &chart, &pools)?;
    if points.iter().any(|p| p.server.is_some()) {
        let bar = 0.3;
        chart
            .draw_series(points.iter().enumerate().map(|(i, p)| {
                let (service, _) = stacked(p);
                Rectangle::new([(x(i) - bar, 0.0), (x(i) + bar, service)], SERVICE.filled())
            }))?
            .label("server: service time p99")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], SERVICE.filled()));
        chart
            .draw_series(points.iter().enumerate().map(|(i, p)| {
                let (service, queue) = stacked(p);
                Rectangle::new(
                    [(x(i) - bar, service), (x(i) + bar, service + queue)],
                    QUEUE.mix(0.8).filled(),
                )
            }))?
            .label("server: queue wait p99 (stacked)")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], QUEUE.filled()));
    }
    if let Some(target) = report.recommendation.and_then(|r| r.target_p99_us) {
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.5, target as f64), (n as f64 - 0.5, target as f64)],
                4,
                4,
                BLACK.mix(0.6).stroke_width(1),
            ))?
            .label(format!("target p99 ({})", human_us(target as f64)))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.6)));
    }
    let client: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| (x(i), p.p99_us as f64))
        .collect();
    chart
        .draw_series(LineSeries::new(client.clone(), CLIENT.stroke_width(2)))?
        .label("clients: p99 (end to end)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CLIENT.stroke_width(2)));
    chart.draw_series(
        client
            .iter()
            .map(|&(x, y)| Circle::new((x, y), 5, CLIENT.filled())),
    )?;
    if let Some(i) = recommended {
        chart.draw_series(std::iter::once(Circle::new(
            (x(i), points[i].p99_us as f64),
            11,
            MARK.stroke_width(3),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    root.present()?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The pool sizes under their columns, drawn here rather than by the mesh:
/// its tick algorithm picks round numbers, not categories.
fn x_ticks(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    chart: &Chart<'_, '_>,
    pools: &[usize],
) -> Result<(), Box<dyn std::error::Error>> {
    let style = ("sans-serif", 15)
        .into_font()
        .into_text_style(root)
        .pos(Pos::new(HPos::Center, VPos::Top));
    for (i, workers) in pools.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, 0.0));
        root.draw(&Text::new(workers.to_string(), (px, py + 7), style.clone()))?;
        root.draw(&PathElement::new([(px, py), (px, py + 5)], BLACK))?;
    }
    Ok(())
}

/// The run's parameters, on one line.
fn subtitle(report: &JsonReport<'_>) -> String {
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
    parts.push(format!(
        "wharf {}, {} CPUs, Linux {}, {}",
        report.version, report.machine.cpus, report.machine.kernel, report.timestamp
    ));
    parts.join(" · ")
}
