//! What a flash-sale run found: admissions per interval against the rate, fairness (admissions
//! out of ticket order, tickets handed out twice), time in the queue, and what the orders got.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::{Buyer, Room};
use crate::load::Percentiles;

/// Admissions per interval of the room's rate, over the intervals from the first admission to
/// the last.
#[derive(Debug, Serialize)]
pub struct Intervals {
    pub intervals: u64,
    pub max: u64,
    pub mean: f64,
    /// Intervals with more admissions than the rate allows (must be 0).
    pub over_rate: u64,
    /// The most admissions within any span of one interval, aligned or not (the rate is a
    /// sliding window: must be at most the rate).
    pub max_in_any_interval: u64,
}

/// The report of a flash-sale run.
#[derive(Debug, Serialize)]
pub struct WaitingRoomReport {
    pub room: String,
    pub buyers: usize,
    pub targets: usize,
    pub rate_admissions: u32,
    pub rate_interval_ms: u64,
    pub elapsed_seconds: f64,
    /// Joins answered per second, while everyone was joining.
    pub joins_per_second: f64,
    pub join_latency_ms: Percentiles,
    /// Buyers who followed their place on an event stream (the others polled: `--follow poll`,
    /// or the instance kept as many streams as it may).
    pub streamed: usize,
    /// HTTP requests sent per buyer (an event stream counts one).
    pub requests_per_buyer: f64,
    pub admitted: usize,
    pub admissions_per_interval: Intervals,
    /// Buyers admitted before someone holding an earlier ticket (must be 0).
    pub out_of_order: usize,
    /// Tickets handed to more than one buyer (must be 0).
    pub duplicate_tickets: usize,
    /// Buyers put back in the queue with their queue token (their entry had been lost).
    pub rejoined: usize,
    /// From joining to admission.
    pub queue_time_ms: Percentiles,
    pub orders_placed: usize,
    /// Orders their buyers cancelled (`--cancel-ratio`): their units go back on sale.
    pub cancelled: usize,
    /// Every outcome: `placed`, or a refusal's problem type, or why no admission came
    /// (`sold_out`: told so, and no unit came back within the buyer's patience).
    pub outcomes: BTreeMap<String, usize>,
    /// The placed orders' statuses once their sagas ended.
    pub order_statuses: BTreeMap<String, usize>,
    /// Buyers told the sale is sold out (on joining, on their stream, or refused an order).
    pub told_sold_out: usize,
    /// For buyers waiting when the run's order of the last unit was placed: how long after it
    /// each was told "sold out".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sold_out_notice_ms: Option<Percentiles>,
    /// The room's stock, when it counts one: the units on sale, and the units held after the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_sold: Option<u64>,
    /// Units sold beyond the stock, by the orders this run placed (must be 0).
    pub oversold: u64,
}

/// The most admissions within any `interval` ms, over the buyers' admission times.
fn most_in_any_interval(buyers: &[Buyer], interval: i64) -> u64 {
    let mut times: Vec<i64> = buyers.iter().filter_map(|b| b.admitted_at_ms).collect();
    times.sort_unstable();
    let mut first = 0;
    let mut most = 0;
    for (last, at) in times.iter().enumerate() {
        while at - times[first] >= interval {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most as u64
}

/// Admissions per interval, and buyers admitted ahead of an earlier ticket.
pub(super) fn judge(buyers: &[Buyer], room: &Room) -> (Intervals, usize, usize) {
    let interval = i64::try_from(room.interval_ms.max(1)).unwrap_or(i64::MAX);
    let mut per_window: BTreeMap<i64, u64> = BTreeMap::new();
    for at in buyers.iter().filter_map(|b| b.admitted_at_ms) {
        *per_window.entry(at.div_euclid(interval)).or_default() += 1;
    }
    let admitted: u64 = per_window.values().sum();
    let intervals = match (per_window.keys().next(), per_window.keys().next_back()) {
        (Some(first), Some(last)) => u64::try_from(last - first + 1).unwrap_or(1),
        _ => 0,
    };
    let summary = Intervals {
        intervals,
        max: per_window.values().copied().max().unwrap_or(0),
        #[allow(clippy::cast_precision_loss, reason = "a report")]
        mean: if intervals == 0 {
            0.0
        } else {
            admitted as f64 / intervals as f64
        },
        over_rate: per_window
            .values()
            .filter(|n| **n > u64::from(room.admissions))
            .count() as u64,
        max_in_any_interval: most_in_any_interval(buyers, interval),
    };
    let mut by_ticket: Vec<(u64, i64)> = buyers
        .iter()
        .filter_map(|b| Some((b.ticket?, b.admitted_at_ms?)))
        .collect();
    by_ticket.sort_unstable();
    let mut latest = i64::MIN;
    let mut out_of_order = 0;
    for (_, at) in &by_ticket {
        if *at < latest {
            out_of_order += 1;
        }
        latest = latest.max(*at);
    }
    let mut seen = HashSet::new();
    let duplicates = buyers
        .iter()
        .filter_map(|b| b.ticket)
        .filter(|t| !seen.insert(*t))
        .count();
    (summary, out_of_order, duplicates)
}

/// Runs the flash sale and prints its report; fails when the room broke its rate, its order or
/// its tickets, or a buyer got no admission or no order.
///
/// # Errors
/// Bad arguments, an unknown room, or a broken rule.
#[allow(clippy::print_stdout, reason = "the report is the command's output")]
pub(super) fn print(r: &WaitingRoomReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let a = &r.admissions_per_interval;
    let q = &r.queue_time_ms;
    let j = &r.join_latency_ms;
    println!(
        "room              {} ({} buyers on {} target(s))",
        r.room, r.buyers, r.targets
    );
    println!(
        "rate              {} every {} ms",
        r.rate_admissions, r.rate_interval_ms
    );
    println!("elapsed           {:.2} s", r.elapsed_seconds);
    println!(
        "joins             {:.0}/s  latency p50 {:.1} ms  p99 {:.1} ms",
        r.joins_per_second, j.p50, j.p99
    );
    println!(
        "following         {} of {} on event streams; {:.2} requests per buyer",
        r.streamed, r.buyers, r.requests_per_buyer
    );
    println!(
        "admitted          {} in {} intervals: max {} per interval, mean {:.2}, {} over the rate; \
         at most {} within any interval",
        r.admitted, a.intervals, a.max, a.mean, a.over_rate, a.max_in_any_interval
    );
    println!(
        "fairness          {} admitted out of ticket order; {} duplicate tickets; {} rejoined",
        r.out_of_order, r.duplicate_tickets, r.rejoined
    );
    println!(
        "time in queue     p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        q.p50, q.p99, q.max
    );
    let list = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "orders            {} placed, {} cancelled by their buyers; outcomes: {}; ended: {}",
        r.orders_placed,
        r.cancelled,
        list(&r.outcomes),
        list(&r.order_statuses)
    );
    if let Some(n) = &r.sold_out_notice_ms {
        println!(
            "sold out          {} told; notice after selling out p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            r.told_sold_out, n.p50, n.p99, n.max
        );
    }
    if let (Some(stock), Some(sold)) = (r.stock, r.units_sold) {
        println!(
            "stock             {sold} of {stock} units sold; {} oversold",
            r.oversold
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::failed;
    use super::*;

    fn admitted(ticket: u64, at: i64) -> Buyer {
        Buyer {
            ticket: Some(ticket),
            admitted_at_ms: Some(at),
            ..failed("placed")
        }
    }

    #[test]
    fn intervals_order_and_tickets_are_judged() {
        let room = Room {
            sku: "HOT".into(),
            admissions: 2,
            interval_ms: 1000,
            validity_ms: 300_000,
            unit_price: serde_json::Value::Null,
            stock: None,
        };
        let buyers = [
            admitted(1, 10_100),
            admitted(2, 10_100),
            admitted(3, 11_000),
            admitted(4, 12_500),
            admitted(5, 12_400),
            admitted(5, 12_600),
        ];
        let (intervals, out_of_order, duplicates) = judge(&buyers, &room);
        assert_eq!(intervals.intervals, 3);
        assert_eq!(intervals.max, 3);
        assert_eq!(intervals.over_rate, 1, "three in the interval from 12 s");
        assert_eq!(out_of_order, 1, "ticket 5 admitted before ticket 4");
        assert_eq!(duplicates, 1);
    }
}
