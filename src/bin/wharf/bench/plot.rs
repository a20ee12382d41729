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
//!
//! This file lays out the canvas, the title and the parameters; each chart
//! has its module (`throughput`, `latency`), and what both share (colours,
//! legend, ticks, the columns) is in `marks`.

mod latency;
mod marks;
mod throughput;

use std::path::Path;

use plotters::prelude::*;
use wharf::bench::{human_rate, human_us};

use super::report::JsonReport;
use marks::Columns;

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
    let pools: Vec<usize> = points.iter().map(|p| p.workers.unwrap_or(0)).collect();
    let recommended = report
        .recommendation
        .and_then(|r| r.workers)
        .and_then(|w| pools.iter().position(|&p| p == w));
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
    let columns = Columns {
        points,
        pools,
        recommended,
    };
    throughput::draw(&root, &top, report, &columns)?;
    latency::draw(&root, &bottom, report, &columns)?;
    root.present()?;
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
