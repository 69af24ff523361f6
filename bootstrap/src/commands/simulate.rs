//! `ordership simulate`: one seed replayed (its trace hash, its findings, `--trace` its steps),
//! or a batch of fresh seeds on every core (runs per minute, faults per run, the seeds that
//! failed, each with the command that replays it).

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use ordership_sim::{Bug, Options, Report};

use crate::cli::SimulateArgs;

/// # Errors
/// An unknown bug's name, or a run or batch that found a violation.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let bug = args
        .bug
        .as_deref()
        .map(|name| {
            Bug::parse(name).with_context(|| {
                let names: Vec<_> = Bug::ALL.iter().map(|b| b.name()).collect();
                format!(
                    "unknown bug {name:?}: the planted bugs are {}",
                    names.join(", ")
                )
            })
        })
        .transpose()?;
    let template = Options {
        seed: 0,
        orders: args.orders,
        faults: !args.no_faults,
        bug,
        trace: args.trace,
        sale: !args.no_sale,
    };
    let batch = args.runs.is_some() || args.duration.is_some();
    tokio::task::spawn_blocking(move || {
        if batch {
            run_batch(&args, &template)
        } else {
            let seed = args.seed.unwrap_or_else(fresh_seed);
            replay(&args, &Options { seed, ..template })
        }
    })
    .await?
}

fn fresh_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn replay_command(report: &Report, options: &Options) -> String {
    let mut command = format!("ordership simulate --seed {}", report.seed);
    if options.orders != 50 {
        command.push_str(&format!(" --orders {}", options.orders));
    }
    if !options.faults {
        command.push_str(" --no-faults");
    }
    if let Some(bug) = options.bug {
        command.push_str(&format!(" --bug {}", bug.name()));
    }
    command
}

fn replay(args: &SimulateArgs, options: &Options) -> anyhow::Result<()> {
    let report = ordership_sim::run(options);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in &report.trace {
        writeln!(out, "{line}")?;
    }
    if args.json {
        let summary = serde_json::json!({
            "seed": report.seed, "trace_hash": report.trace_hash, "steps": report.steps,
            "faults": report.faults, "simulated_ms": report.simulated_ms,
            "quiesce_ms": report.quiesce_ms, "violations": report.violations,
        });
        writeln!(out, "{summary}")?;
    } else {
        writeln!(
            out,
            "seed {}: {} steps, {} faults, {} ms simulated ({} ms to quiesce), {}",
            report.seed,
            report.steps,
            report.faults,
            report.simulated_ms,
            report.quiesce_ms,
            if report.passed() { "passed" } else { "FAILED" }
        )?;
        for violation in &report.violations {
            writeln!(out, "  violation: {violation}")?;
        }
        writeln!(out, "trace hash: {}", report.trace_hash)?;
    }
    out.flush()?;
    if !report.passed() {
        bail!(
            "seed {} failed; replay: {}",
            report.seed,
            replay_command(&report, options)
        );
    }
    Ok(())
}

fn run_batch(args: &SimulateArgs, template: &Options) -> anyhow::Result<()> {
    let first = args.seed.unwrap_or_else(fresh_seed);
    let runs = args.runs.unwrap_or(u64::MAX - first);
    let budget = args.duration.unwrap_or(Duration::MAX);
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(Into::into))
        .unwrap_or(1);
    let template = Options {
        trace: false,
        ..template.clone()
    };
    let report = ordership_sim::run_batch(&template, first, runs, budget, threads, false);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let per_run = |n: u64| n as f64 / report.runs.max(1) as f64;
    if args.json {
        let summary = serde_json::json!({
            "first_seed": report.first_seed, "last_seed": report.last_seed, "runs": report.runs,
            "failed": report.failures.len(), "runs_per_minute": report.runs_per_minute(),
            "faults_per_run": per_run(report.faults), "steps_per_run": per_run(report.steps),
            "orders_per_run": template.orders, "threads": threads,
            "elapsed_s": report.elapsed.as_secs_f64(),
            "failed_seeds": report.failures.iter().map(|r| r.seed).collect::<Vec<_>>(),
        });
        writeln!(out, "{summary}")?;
    } else {
        writeln!(
            out,
            "seeds {}..={}: {} runs of {} orders in {:.1} s on {threads} threads ({:.0} runs/min), \
             {:.1} faults and {:.0} steps per run, {} failed",
            report.first_seed,
            report.last_seed,
            report.runs,
            template.orders,
            report.elapsed.as_secs_f64(),
            report.runs_per_minute(),
            per_run(report.faults),
            per_run(report.steps),
            report.failures.len()
        )?;
    }
    for failure in &report.failures {
        writeln!(
            out,
            "seed {} FAILED: {}\n  replay: {}",
            failure.seed,
            failure.violations.join("; "),
            replay_command(failure, &template)
        )?;
    }
    out.flush()?;
    if !report.failures.is_empty() {
        bail!("{} of {} seeds failed", report.failures.len(), report.runs);
    }
    Ok(())
}
