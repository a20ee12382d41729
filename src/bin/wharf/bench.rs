//! `wharf bench`: sweep pool sizes and report, so the pool size is chosen
//! by measurement. The measuring is in [`wharf::bench`]; this file prints
//! the table and writes the CSV, JSON and SVG files.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use serde::Serialize;
use wharf::bench::{self, BenchOptions, BenchPoint, Recommendation};

use crate::cli::BenchArgs;

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        workers: args.workers.clone(),
        queue: args.queue,
        delay: args.delay,
        spin: args.spin,
        clients: args.clients,
        warmup: args.warmup,
        duration: args.duration,
        payload: args.payload,
        pipeline: args.pipeline,
        connect: args.connect,
        batches_per_connection: args.reconnect_every,
        ..BenchOptions::default()
    };
    let steps = if options.connect.is_some() {
        1
    } else {
        options.workers.len() as u64
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
                .expect("static progress template"),
        );
        bar
    });
    let points = bench::sweep(
        &options,
        |workers| {
            let what = workers.map_or("external server".to_owned(), |w| format!("workers={w}"));
            match &bar {
                Some(bar) => bar.set_message(what),
                None => eprintln!("bench: {what}: running"),
            }
        },
        |point| {
            let line = format!(
                "{}: {:.0} req/s, p99 {} us, {} errors",
                label(point),
                point.requests_per_sec,
                point.p99_us,
                point.errors
            );
            match &bar {
                Some(bar) => {
                    bar.inc(1);
                    bar.println(line);
                }
                None => eprintln!("bench: {line}"),
            }
        },
    )?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }

    let recommendation = bench::recommend(&points);
    print!("{}", table(&options, &points, recommendation.as_ref()));
    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&points))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.json {
        let report = JsonReport {
            options: &options,
            results: &points,
            recommendation: recommendation.as_ref(),
        };
        let text = serde_json::to_string_pretty(&report).context("cannot encode JSON")?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot(path, &points).with_context(|| format!("cannot draw {}", path.display()))?;
    }
    let errors: u64 = points.iter().map(|p| p.errors).sum();
    if errors > 0 {
        eprintln!("bench: {errors} error(s): wrong echoes, ERROR replies or failed connections");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct JsonReport<'a> {
    options: &'a BenchOptions,
    results: &'a [BenchPoint],
    recommendation: Option<&'a Recommendation>,
}

fn label(point: &BenchPoint) -> String {
    point
        .workers
        .map_or("external".to_owned(), |w| format!("workers={w}"))
}

fn cpu(point: &BenchPoint) -> String {
    point
        .server_cpu_seconds
        .map_or("-".to_owned(), |c| format!("{c:.2}"))
}

/// The human-readable table and the recommendation.
pub fn table(
    options: &BenchOptions,
    points: &[BenchPoint],
    rec: Option<&Recommendation>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7} {:>8}",
        "workers",
        "req/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "served",
        "busy",
        "errors",
        "cpu s"
    );
    for p in points {
        let _ = writeln!(
            out,
            "{:>8} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>7} {:>8}",
            p.workers.map_or("ext".to_owned(), |w| w.to_string()),
            p.requests_per_sec,
            p.p50_us,
            p.p90_us,
            p.p99_us,
            p.p999_us,
            p.max_us,
            format!("{}/{}", p.clients_served, options.clients),
            p.busy,
            p.errors,
            cpu(p)
        );
    }
    if let Some(rec) = rec {
        let _ = writeln!(
            out,
            "\nrecommendation: --workers {} ({:.0} req/s, within 5% of the best {:.0} req/s; p99 {} us)",
            rec.workers, rec.requests_per_sec, rec.best_requests_per_sec, rec.p99_us
        );
        let served = points
            .iter()
            .find(|p| p.workers == Some(rec.workers))
            .map_or(options.clients, |p| p.clients_served);
        if served < options.clients {
            let _ = writeln!(
                out,
                "note: at that size only {served} of {} clients got a reply in the window; the \
                 rest were still waiting in line (or were turned away). Workers take turns \
                 among connections with work, so a pool this small was saturated: look at \
                 the p99 before choosing it.",
                options.clients
            );
        }
    }
    if !options.delay.is_zero() {
        let _ = writeln!(
            out,
            "\nLittle's law (min(clients, workers) / delay) against measured:"
        );
        for p in points {
            if let Some(expected) = p.workers.and_then(|w| bench::littles_law(options, w)) {
                let _ = writeln!(
                    out,
                    "  workers={:<4} expected {:>9.0} req/s, measured {:>9.0} req/s ({:.0}%)",
                    p.workers.unwrap_or_default(),
                    expected,
                    p.requests_per_sec,
                    100.0 * p.requests_per_sec / expected
                );
            }
        }
    }
    out
}

/// One row per point, with a header.
pub fn csv(points: &[BenchPoint]) -> String {
    let mut out = String::from(
        "workers,requests,seconds,requests_per_sec,p50_us,p90_us,p99_us,p999_us,max_us,clients_served,busy,errors,server_cpu_seconds\n",
    );
    for p in points {
        let _ = writeln!(
            out,
            "{},{},{:.3},{:.1},{},{},{},{},{},{},{},{},{}",
            p.workers.map_or(String::new(), |w| w.to_string()),
            p.requests,
            p.seconds,
            p.requests_per_sec,
            p.p50_us,
            p.p90_us,
            p.p99_us,
            p.p999_us,
            p.max_us,
            p.clients_served,
            p.busy,
            p.errors,
            p.server_cpu_seconds
                .map_or(String::new(), |c| format!("{c:.3}"))
        );
    }
    out
}

/// Throughput and p99 against pool size (log2 axis), one panel each.
fn plot(path: &Path, points: &[BenchPoint]) -> anyhow::Result<()> {
    let data: Vec<(f64, f64, f64)> = points
        .iter()
        .filter_map(|p| {
            p.workers.map(|w| {
                (
                    (w as f64).log2(),
                    p.requests_per_sec,
                    p.p99_us as f64 / 1000.0,
                )
            })
        })
        .collect();
    anyhow::ensure!(!data.is_empty(), "nothing to plot (no pool sizes measured)");
    let x_max = data.iter().map(|d| d.0).fold(0.0, f64::max).max(1.0);
    let root = SVGBackend::new(path, (900, 700)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(350);
    type Value = fn(&(f64, f64, f64)) -> f64;
    let panels: [(_, &str, &str, Value, RGBColor); 2] = [
        (top, "Throughput by pool size", "requests/s", |d| d.1, BLUE),
        (bottom, "p99 latency by pool size", "p99 (ms)", |d| d.2, RED),
    ];
    for (area, title, y_label, value, color) in panels {
        let y_max = data.iter().map(value).fold(0.0, f64::max) * 1.1 + f64::EPSILON;
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.2..x_max + 0.2, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("workers (log2 scale)")
            .y_desc(y_label)
            .x_labels(data.len() + 1)
            .x_label_formatter(&|x| format!("{:.0}", 2f64.powf(*x)))
            .y_label_formatter(&|y| match *y {
                y if y >= 100.0 || y == 0.0 => format!("{y:.0}"),
                y if y >= 1.0 => format!("{y:.1}"),
                y => format!("{y:.3}"),
            })
            .draw()?;
        chart.draw_series(LineSeries::new(data.iter().map(|d| (d.0, value(d))), color))?;
        chart.draw_series(
            data.iter()
                .map(|d| Circle::new((d.0, value(d)), 4, color.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}
