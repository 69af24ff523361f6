//! What a load run reports, as text or one JSON object.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub orders: usize,
    pub concurrency: usize,
    pub elapsed_seconds: f64,
    /// Orders placed per second (POST answered).
    pub placed_per_second: f64,
    /// Orders that reached a terminal state per second (omitted with --no-wait).
    pub settled_per_second: Option<f64>,
    pub post_latency_ms: Percentiles,
    /// From POST to terminal state (omitted with --no-wait).
    pub settle_latency_ms: Option<Percentiles>,
    pub outcomes: BTreeMap<String, usize>,
    /// POSTs sent again after a failure (same Idempotency-Key).
    pub post_retries: usize,
    /// HTTP requests sent to place and follow the orders.
    pub requests: usize,
    /// Requests per order (1 when every `POST` with `Prefer: wait` came back settled).
    pub requests_per_order: f64,
    /// Orders never placed because the run stalled.
    pub not_placed: usize,
    /// Nothing settled for `--stall-limit`: the run stopped early.
    pub stalled: bool,
    /// The run cut into `--report-every` intervals (empty without it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Interval>,
}

/// What settled in one interval of a run.
#[derive(Debug, Serialize)]
pub struct Interval {
    /// Seconds from the start of the run to the start of the interval.
    pub from_second: f64,
    pub settled: usize,
    pub settled_per_second: f64,
    /// POST→terminal of the orders that settled in the interval.
    pub settle_latency_ms: Percentiles,
}

/// The run's settled orders, interval by interval (a last interval shorter than `every` is
/// left out: its rate would not compare).
pub(super) fn intervals(samples: &[super::Sample], every: Duration) -> Vec<Interval> {
    let mut buckets: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
    let last = samples.iter().map(|s| s.at).max().unwrap_or_default();
    let whole = (last.as_secs_f64() / every.as_secs_f64()).floor() as u64;
    for s in samples {
        let Some(settled) = s.settled else { continue };
        let n = (s.at.as_secs_f64() / every.as_secs_f64()).floor() as u64;
        if n < whole {
            buckets.entry(n).or_default().push(settled);
        }
    }
    (0..whole)
        .map(|n| {
            let settled = buckets.remove(&n).unwrap_or_default();
            Interval {
                from_second: n as f64 * every.as_secs_f64(),
                settled: settled.len(),
                settled_per_second: settled.len() as f64 / every.as_secs_f64(),
                settle_latency_ms: percentiles(settled),
            }
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub(super) fn percentiles(mut values: Vec<Duration>) -> Percentiles {
    values.sort_unstable();
    let at = |q: f64| {
        if values.is_empty() {
            return 0.0;
        }
        // Nearest-rank: the smallest value with at least q of the samples at or below it.
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1].as_secs_f64() * 1000.0
    };
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    }
}

#[allow(clippy::print_stdout, reason = "the report is the command's output")]
pub(super) fn print_report(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    println!(
        "orders            {} (concurrency {})",
        r.orders, r.concurrency
    );
    println!("elapsed           {:.2} s", r.elapsed_seconds);
    println!("placed            {:.1} orders/s", r.placed_per_second);
    if let Some(rate) = r.settled_per_second {
        println!("settled           {rate:.1} orders/s (POST to terminal state)");
    }
    let p = &r.post_latency_ms;
    println!(
        "POST latency      p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        p.p50, p.p95, p.p99, p.max
    );
    if let Some(p) = &r.settle_latency_ms {
        println!(
            "POST→terminal     p50 {:.1} ms  p95 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            p.p50, p.p95, p.p99, p.max
        );
    }
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("outcomes          {}", outcomes.join(", "));
    println!("POST retries      {}", r.post_retries);
    println!(
        "requests          {} ({:.2} per order)",
        r.requests, r.requests_per_order
    );
    for i in &r.intervals {
        println!(
            "from {:>6.0} s     {:.1} orders/s settled, POST→terminal p50 {:.1} ms  p99 {:.1} ms",
            i.from_second, i.settled_per_second, i.settle_latency_ms.p50, i.settle_latency_ms.p99
        );
    }
    if r.stalled {
        println!(
            "STALLED           nothing settled within the stall limit; {} orders not placed",
            r.not_placed
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_count_what_settled_in_each_and_leave_out_a_partial_last_one() {
        let sample = |at_ms: u64, settled: Option<u64>| super::super::Sample {
            post: Duration::from_millis(1),
            settled: settled.map(Duration::from_millis),
            outcome: "confirmed".to_owned(),
            at: Duration::from_millis(at_ms),
        };
        let samples = [
            sample(100, Some(10)),
            sample(900, Some(30)),
            sample(1_200, Some(20)),
            sample(1_500, None),
            sample(2_100, Some(5)),
        ];
        let found = intervals(&samples, Duration::from_secs(1));
        let seen: Vec<(f64, usize, f64)> = found
            .iter()
            .map(|i| (i.from_second, i.settled, i.settle_latency_ms.max))
            .collect();
        assert_eq!(seen, [(0.0, 2, 30.0), (1.0, 1, 20.0)]);
        assert!((found[0].settled_per_second - 2.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = percentiles(values);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
    }
}
