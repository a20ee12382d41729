//! The bottom chart: latency by pool size, on a logarithmic µs axis (an
//! overloaded pool's seconds would otherwise flatten a healthy pool's
//! milliseconds and the target line to the floor). The server's
//! service-time p99 and queue-wait p99 as two bars side by side, each
//! rising from the axis floor (stacking misleads on a log axis), the
//! clients' p99 as a line, and the target p99 dashed.

use plotters::coord::Shift;
use plotters::prelude::*;
use wharf::bench::{human_rate, human_us};

use super::marks::{legend, x_ticks, Columns, Key, CLIENT, LEGEND, MARK, QUEUE, SERVICE};
use crate::bench::report::JsonReport;

/// Draws the latency chart on `area` (a part of `root`, where the ticks,
/// the legend and the note on the bars go).
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
    let mut chart = ChartBuilder::on(area)
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
    x_ticks(root, |i| chart.backend_coord(&(x(i), floor)), pools)?;
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
    legend(root, chart.plotting_area(), &keys)?;
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
