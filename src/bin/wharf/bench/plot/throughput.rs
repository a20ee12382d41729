//! The top chart: throughput by pool size. Measured requests/s, the
//! offered rate if any, the Little's-law expectation dashed for
//! `--delay`/`--spin` runs, "served N/M" under a pool that left clients
//! unserved, and the recommended pool ringed.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use wharf::bench::{self, human_rate};

use super::marks::{legend, x_ticks, Columns, Key, CLIENT, LEGEND, MARK, THROUGHPUT};
use crate::bench::report::JsonReport;

/// Draws the throughput chart on `area` (a part of `root`, where the ticks
/// and the legend go).
pub fn draw(
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    report: &JsonReport<'_>,
    columns: &Columns<'_>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (points, pools, recommended) = (&columns.points, &columns.pools, columns.recommended);
    let n = points.len();
    let x = |i: usize| i as f64;
    let x_range = || -0.5..n as f64 - 0.5;
    let options = report.options;
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
    let mut chart = ChartBuilder::on(area)
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
    x_ticks(root, |i| chart.backend_coord(&(x(i), 0.0)), pools)?;
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
    legend(root, chart.plotting_area(), &keys)?;
    Ok(())
}
