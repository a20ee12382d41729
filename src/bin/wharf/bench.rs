//! `wharf bench`: sweep pool sizes and report, so the pool size is chosen
//! by measurement. The measuring is in [`wharf::bench`]; this file checks
//! the flags and output paths before anything runs, runs the sweep and
//! decides the exit status. Showing the progress (`progress`), printing
//! the table (`table`) and writing the CSV, JSON and SVG files (`outputs`,
//! `csv`, `plot`, all from one `report`) have modules of their own.
//!
//! Ctrl-C sets the sweep's cancel flag: the point under way is dropped, the
//! points measured so far are printed and written, and the exit status is
//! 130. A second Ctrl-C exits at once.

mod csv;
mod outputs;
mod plot;
mod progress;
mod report;
mod table;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use wharf::bench::{self, BenchError, BenchOptions, Event};

use crate::cli::BenchArgs;
use outputs::Outputs;
use progress::Progress;
use report::JsonReport;
use table::table;

/// Exit status of an interrupted run.
const INTERRUPTED: u8 = 130;

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let options = BenchOptions {
        workers: if args.workers.is_empty() {
            BenchOptions::default().workers
        } else {
            args.workers.clone()
        },
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
        rate: args.rate,
        idle: args.idle,
        idle_ping: args.idle_ping,
        target_p99: args.target_p99,
        metrics: args.metrics,
        tls: args.tls,
        tls_ca: args.tls_ca.clone(),
        tls_server_name: args.tls_server_name.clone(),
    };
    // Everything that can be refused is refused before measuring.
    if let Err(e) = bench::check(&options) {
        return Ok(usage(&e.to_string()));
    }
    let outputs = match Outputs::open(&args) {
        Ok(outputs) => outputs,
        Err(message) => return Ok(usage(&message)),
    };

    let cancel = Arc::new(AtomicBool::new(false));
    // The second Ctrl-C exits at once; the first sets the flag.
    for register in [
        signal_hook::flag::register_conditional_shutdown(
            signal_hook::consts::SIGINT,
            i32::from(INTERRUPTED),
            Arc::clone(&cancel),
        ),
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&cancel)),
    ] {
        if let Err(e) = register {
            eprintln!("bench: cannot handle Ctrl-C ({e}); it will stop the run without a report");
        }
    }

    let progress = Progress::new(&options);
    let mut points = Vec::new();
    let result = bench::sweep(&options, &cancel, |event| {
        progress.event(&event);
        if let Event::Done(point) = event {
            points.push(point.clone());
        }
    });
    progress.finish();
    let interrupted = cancel.load(Ordering::Relaxed);

    let recommendation = bench::recommend(&points, options.target_p99);
    if !points.is_empty() {
        print!("{}", table(&options, &points, recommendation.as_ref()));
    }
    let report = JsonReport::new(&options, &points, recommendation.as_ref(), interrupted);
    outputs.write(&report)?;

    if interrupted {
        eprintln!(
            "bench: interrupted: {} point(s) measured are reported",
            points.len()
        );
        return Ok(ExitCode::from(INTERRUPTED));
    }
    if let Err(e) = result {
        eprintln!("wharf: error: {e}");
        if !points.is_empty() {
            eprintln!(
                "bench: the {} point(s) measured before are reported",
                points.len()
            );
        }
        return Ok(ExitCode::from(match e {
            BenchError::Invalid(_) => 2,
            _ => 1,
        }));
    }
    let errors: u64 = points.iter().map(|p| p.errors).sum();
    if errors > 0 {
        eprintln!("bench: {errors} error(s): wrong echoes, ERROR replies or failed connections");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// A usage error: the message, and exit status 2 as for a bad flag.
fn usage(message: &str) -> ExitCode {
    eprintln!("wharf: error: {message}");
    ExitCode::from(2)
}
