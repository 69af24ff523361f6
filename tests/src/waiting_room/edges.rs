//! The admission queue's contract for a sale's edges: the opening draw, the rate over every
//! interval (not only aligned ones), and a queue that expires once its room is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordership_domain::ports::{QueueRules, WaitingRoomQueue};
use ordership_domain::waiting_room::EntryStatus;

use super::{buyer, fresh_room, join_all, rules, ticket_of};

/// The most admissions within any interval of `interval_ms` (a sliding window over `times`).
pub(super) fn most_in_any_interval(times: &mut [u64], interval_ms: u64) -> usize {
    times.sort_unstable();
    let mut first = 0;
    let mut most = 0;
    for last in 0..times.len() {
        while times[last] - times[first] >= interval_ms {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// Buyers queued before a room first admits are let in in an order drawn at the opening, not in
/// the order they joined: over many rooms (a seed each) the first to join is first in line about
/// as often as in any other place; a buyer joining after the opening queues in arrival order.
pub async fn buyers_queued_before_the_opening_are_let_in_in_a_drawn_order(
    queue: Arc<dyn WaitingRoomQueue>,
) {
    // 200 buyers in a known order: at the opening their tickets are a permutation of theirs.
    let room = fresh_room();
    let scheduled = rules(1, 60_000, false);
    join_all(queue.as_ref(), &room, 200, &scheduled).await;
    let open = QueueRules {
        admitting: true,
        ..scheduled
    };
    queue.tick(&room, &open).await.expect("the opening tick");
    let mut drawn = Vec::with_capacity(200);
    for i in 0..200 {
        let status = queue.status(&room, &buyer(i), &open).await.expect("status");
        drawn.push(ticket_of(&status.expect("in the room")));
    }
    let arrival: Vec<u64> = (1..=200).collect();
    assert_ne!(drawn, arrival, "drawn, not in arrival order");
    let mut sorted = drawn.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, arrival, "the same tickets");

    const ROOMS: u64 = 200;
    const BUYERS: usize = 4;
    let mut places_of_the_first = [0_u64; BUYERS];
    for seed in 0..ROOMS {
        let room = fresh_room();
        let scheduled = rules(BUYERS as u32, 60_000, false);
        for i in 0..BUYERS {
            queue
                .join(&room, &buyer(i), None, &scheduled)
                .await
                .expect("join");
        }
        let open = QueueRules {
            admitting: true,
            draw_seed: seed * 7_919 + 13,
            ..scheduled
        };
        let late = queue
            .join(&room, &buyer(BUYERS), None, &open)
            .await
            .expect("join after the opening");
        assert!(
            matches!(late, EntryStatus::Waiting { position: 5, .. }),
            "after everyone drawn: {late:?}"
        );
        let admitted = queue.tick(&room, &open).await.expect("tick");
        let mut tickets: Vec<u64> = admitted.iter().map(|(_, t)| t.0).collect();
        assert!(
            tickets.windows(2).all(|w| w[0] < w[1]),
            "in ticket order: {admitted:?}"
        );
        tickets.sort_unstable();
        assert_eq!(tickets, [1, 2, 3, 4], "the same tickets, drawn anew");
        let place = admitted
            .iter()
            .position(|(who, _)| who == &buyer(0))
            .expect("the first joiner admitted");
        places_of_the_first[place] += 1;
    }
    // 50 expected in each place; a queue in arrival order puts all 200 in the first.
    assert!(
        places_of_the_first.iter().all(|&n| (25..=75).contains(&n)),
        "the first joiner's places: {places_of_the_first:?}"
    );
}

/// A room's queue set to expire is forgotten after that time, whoever was in it.
pub async fn a_queue_set_to_expire_is_forgotten(queue: Arc<dyn WaitingRoomQueue>) {
    let room = fresh_room();
    let open = rules(1, 60_000, true);
    join_all(queue.as_ref(), &room, 2, &open).await;
    queue
        .expire(&room, Duration::from_millis(200))
        .await
        .expect("expire");
    queue
        .expire(&room, Duration::from_secs(3_600))
        .await
        .expect("asking again does not put it off");
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue
        .status(&room, &buyer(1), &open)
        .await
        .expect("status")
        .is_some()
    {
        assert!(Instant::now() < deadline, "the queue forgotten");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = queue.stats(&room, &open).await.expect("stats");
    assert_eq!(
        (stats.waiting, stats.admitted, stats.last_ticket),
        (0, 0, 0)
    );
}

/// Buyers admitted on joining late in one interval and by the ticks just after an aligned window
/// boundary still never exceed the rate within any interval of its length: the window slides.
pub async fn buyers_joining_across_a_window_boundary_never_exceed_the_rate_in_any_interval(
    queue: Arc<dyn WaitingRoomQueue>,
) {
    let room = fresh_room();
    let (admissions, interval_ms) = (5, 400);
    let open = rules(admissions, interval_ms, true);
    let mut times = Vec::new();
    let started = Instant::now();
    let mut i = 0;
    // Joins and ticks for three intervals and a half: every aligned boundary is crossed with
    // buyers waiting on both sides of it.
    while started.elapsed() < Duration::from_millis(interval_ms * 7 / 2) {
        let status = queue
            .join(&room, &buyer(i), None, &open)
            .await
            .expect("join");
        if let EntryStatus::Admitted { admitted_at_ms, .. } = status {
            times.push(admitted_at_ms);
        }
        for (who, _) in queue.tick(&room, &open).await.expect("tick") {
            if let Some(EntryStatus::Admitted { admitted_at_ms, .. }) =
                queue.status(&room, &who, &open).await.expect("status")
            {
                times.push(admitted_at_ms);
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        times.len() >= 3 * admissions as usize,
        "the room admitted at its rate: {times:?}"
    );
    let most = most_in_any_interval(&mut times, interval_ms);
    assert!(
        most <= admissions as usize,
        "{most} admitted within {interval_ms} ms, more than {admissions}: {times:?}"
    );
}
