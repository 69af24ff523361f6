//! Many seeds: on every core, each run on a runtime of its own; what failed, and how fast.

use std::time::{Duration, Instant};

use crate::driver::{Options, Report, run};

/// What a batch of runs found.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub runs: u64,
    pub faults: u64,
    pub steps: u64,
    pub elapsed: Duration,
    /// The runs that failed, by seed order.
    pub failures: Vec<Report>,
    /// The first seed and the last one run.
    pub first_seed: u64,
    pub last_seed: u64,
}

impl BatchReport {
    /// Complete runs per minute of wall time.
    #[must_use]
    pub fn runs_per_minute(&self) -> f64 {
        self.runs as f64 * 60.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs seeds `first, first + 1, …` with `template`'s other options, on `threads` threads,
/// until `runs` are done or `budget` has passed, whichever is first (`stop_at_failure`: until
/// the first failure too).
#[must_use]
pub fn run_batch(
    template: &Options,
    first: u64,
    runs: u64,
    budget: Duration,
    threads: usize,
    stop_at_failure: bool,
) -> BatchReport {
    let started = Instant::now();
    let next = std::sync::atomic::AtomicU64::new(first);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let reports: Vec<Vec<Report>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        if started.elapsed() >= budget
                            || stop.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            break;
                        }
                        let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if seed >= first.saturating_add(runs) {
                            break;
                        }
                        let report = run(&Options {
                            seed,
                            ..template.clone()
                        });
                        if !report.passed() && stop_at_failure {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        done.push(report);
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let mut all: Vec<Report> = reports.into_iter().flatten().collect();
    all.sort_by_key(|r| r.seed);
    BatchReport {
        runs: all.len() as u64,
        faults: all.iter().map(|r| r.faults).sum(),
        steps: all.iter().map(|r| r.steps).sum(),
        elapsed: started.elapsed(),
        first_seed: first,
        last_seed: all.last().map_or(first, |r| r.seed),
        failures: all.into_iter().filter(|r| !r.passed()).collect(),
    }
}
