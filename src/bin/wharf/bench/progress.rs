//! The progress display on stderr: on a TTY a bar that moves within a
//! step (a thread follows the clock between the sweep's events), otherwise
//! one plain line per point measured.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use wharf::bench::{human_rate, human_us, BenchOptions, Event};

use super::table::label;

/// The progress display: a bar on a TTY that moves within a step, one
/// plain line per step otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    state: Arc<Mutex<Phase>>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

/// Where the sweep is: step, phase, and when the phase started.
struct Phase {
    label: String,
    measuring: bool,
    step: usize,
    steps: usize,
    since: Instant,
}

impl Progress {
    pub fn new(options: &BenchOptions) -> Progress {
        let steps = if options.connect.is_some() {
            1
        } else {
            options.workers.len()
        };
        let state = Arc::new(Mutex::new(Phase {
            label: String::new(),
            measuring: false,
            step: 0,
            steps,
            since: Instant::now(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (warmup, duration) = (options.warmup, options.duration);
        let step_ms = (warmup + duration).as_millis().max(1) as u64;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(step_ms * steps as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:30} {msg} [{elapsed}, about {eta} to go]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        // The bar's position and message follow the clock within a step.
        let ticker = bar.clone().and_then(|bar| {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("bench-progress".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        {
                            let phase = state.lock();
                            let elapsed = phase.since.elapsed();
                            let (done_in_step, left) = if phase.measuring {
                                (
                                    warmup + elapsed.min(duration),
                                    duration.saturating_sub(elapsed),
                                )
                            } else {
                                (
                                    elapsed.min(warmup),
                                    warmup.saturating_sub(elapsed) + duration,
                                )
                            };
                            bar.set_position(
                                phase.step as u64 * step_ms + done_in_step.as_millis() as u64,
                            );
                            bar.set_message(format!(
                                "step {}/{} {}: {} ({:.1} s left in the step)",
                                phase.step + 1,
                                phase.steps,
                                phase.label,
                                if phase.measuring {
                                    "measuring"
                                } else {
                                    "warming up"
                                },
                                left.as_secs_f64()
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
                .ok()
        });
        Progress {
            bar,
            state,
            ticker,
            stop,
        }
    }

    pub fn event(&self, event: &Event<'_>) {
        match *event {
            Event::Warmup {
                step,
                steps,
                workers,
            }
            | Event::Measure {
                step,
                steps,
                workers,
            } => {
                let mut phase = self.state.lock();
                phase.label = label(workers);
                phase.measuring = matches!(event, Event::Measure { .. });
                phase.step = step;
                phase.steps = steps;
                phase.since = Instant::now();
            }
            Event::Done(point) => {
                let line = format!(
                    "{}: {} req/s, p99 {}, served {}/{}, {} errors",
                    label(point.workers),
                    human_rate(point.requests_per_sec),
                    human_us(point.p99_us as f64),
                    point.clients_served,
                    point.clients,
                    point.errors
                );
                match &self.bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("bench: {line}"),
                }
            }
        }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
