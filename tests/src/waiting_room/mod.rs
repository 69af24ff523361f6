//! The admission queue's contract: what every [`WaitingRoomQueue`] adapter (memory, Redis
//! standalone, Redis Cluster) must do, checked on the queue's own clock with short windows and
//! polling, never sleeps as synchronisation.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordership_domain::CustomerId;
use ordership_domain::ports::{QueueRules, WaitingRoomQueue};
use ordership_domain::waiting_room::{EntryStatus, Rate, RoomId, Ticket};

mod edges;
mod holding;

use edges::most_in_any_interval;
pub use edges::*;
pub use holding::*;

/// The nodes of the suite's Redis Cluster that speaks only TLS (`REDIS_CLUSTER_TLS_NODES`, which
/// scripts/test.sh sets), as `rediss://` URLs.
///
/// # Panics
/// Without the variable: the tests that need the cluster fail, never skip.
#[must_use]
pub fn tls_cluster_nodes() -> Vec<String> {
    std::env::var("REDIS_CLUSTER_TLS_NODES")
        .unwrap_or_else(|_| {
            panic!("REDIS_CLUSTER_TLS_NODES is not set: the TLS Redis Cluster that scripts/test.sh starts is needed")
        })
        .split(',')
        .map(|node| format!("rediss://{node}"))
        .collect()
}

/// A room of a name no other test uses.
#[must_use]
pub fn fresh_room() -> RoomId {
    RoomId::parse(&format!("t-{}", uuid::Uuid::now_v7().simple())).expect("room id")
}

pub(super) fn buyer(i: usize) -> CustomerId {
    CustomerId::parse(&format!("b-{i}")).expect("buyer")
}

pub(super) fn rules(admissions: u32, interval_ms: u64, admitting: bool) -> QueueRules {
    QueueRules {
        rate: Rate::new(admissions, Duration::from_millis(interval_ms)).expect("rate"),
        heartbeat_timeout: Duration::from_secs(30),
        admitting,
        draw_seed: 42,
        admission_validity: Duration::from_secs(300),
        holding_limit: None,
    }
}

/// Buyers 0 to `n` - 1 join `room`, one after the other.
pub(super) async fn join_all(
    queue: &dyn WaitingRoomQueue,
    room: &RoomId,
    n: usize,
    rules: &QueueRules,
) {
    for i in 0..n {
        queue
            .join(room, &buyer(i), None, rules)
            .await
            .expect("join");
    }
}

pub(super) fn ticket_of(status: &EntryStatus) -> u64 {
    status.ticket().0
}

/// Buyers joining at once get distinct tickets, in one order; positions follow the tickets;
/// joining again changes nothing.
pub async fn tickets_are_unique_and_positions_follow_them(queue: Arc<dyn WaitingRoomQueue>) {
    let room = fresh_room();
    let closed = rules(10, 1_000, false);
    let mut joins = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (queue, room) = (Arc::clone(&queue), room.clone());
        joins.spawn(async move { (i, queue.join(&room, &buyer(i), None, &closed).await) });
    }
    let mut tickets = BTreeMap::new();
    while let Some(joined) = joins.join_next().await {
        let (i, status) = joined.expect("task");
        let status = status.expect("join");
        assert!(matches!(status, EntryStatus::Waiting { .. }), "{status:?}");
        tickets.insert(ticket_of(&status), i);
    }
    assert_eq!(tickets.len(), 50, "unique tickets");
    for (position, (_, &i)) in tickets.iter().enumerate() {
        let status = queue
            .status(&room, &buyer(i), &closed)
            .await
            .expect("status")
            .expect("in the room");
        assert!(
            matches!(status, EntryStatus::Waiting { position: p, waiting: 50, .. } if p == position as u64 + 1),
            "{status:?} at {position}"
        );
    }
    let (&first, &i) = tickets.iter().next().expect("one");
    let again = queue
        .join(&room, &buyer(i), None, &closed)
        .await
        .expect("join");
    assert_eq!(ticket_of(&again), first, "one entry per buyer");
    assert_eq!(
        queue.stats(&room, &closed).await.expect("stats").waiting,
        50
    );
}

/// A buyer who need not wait is admitted on joining; the next one waits once the window is used.
pub async fn a_quiet_room_admits_at_once(queue: Arc<dyn WaitingRoomQueue>) {
    let room = fresh_room();
    // A window of a day: the test cannot straddle two.
    let open = rules(2, 86_400_000, true);
    for i in 0..2 {
        let status = queue
            .join(&room, &buyer(i), None, &open)
            .await
            .expect("join");
        assert!(matches!(status, EntryStatus::Admitted { .. }), "{status:?}");
    }
    let third = queue
        .join(&room, &buyer(2), None, &open)
        .await
        .expect("join");
    assert!(
        matches!(third, EntryStatus::Waiting { position: 1, .. }),
        "{third:?}"
    );
    assert!(
        queue.tick(&room, &open).await.expect("tick").is_empty(),
        "the window is used up"
    );
}

/// However many tick at once, no interval of the rate's length admits more than the rate (not
/// only aligned ones), and buyers are let in in ticket order.
pub async fn the_rate_holds_across_concurrent_tickers_in_ticket_order(
    queue: Arc<dyn WaitingRoomQueue>,
) {
    let room = fresh_room();
    let (admissions, interval_ms) = (5, 200);
    let closed = rules(admissions, interval_ms, false);
    for i in 0..40 {
        queue
            .join(&room, &buyer(i), None, &closed)
            .await
            .expect("join");
    }
    let open = rules(admissions, interval_ms, true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut admitted: Vec<(CustomerId, Ticket)> = Vec::new();
    while admitted.len() < 40 {
        assert!(
            Instant::now() < deadline,
            "only {} admitted",
            admitted.len()
        );
        let mut tickers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let (queue, room) = (Arc::clone(&queue), room.clone());
            tickers.spawn(async move { queue.tick(&room, &open).await.expect("tick") });
        }
        while let Some(ticked) = tickers.join_next().await {
            admitted.extend(ticked.expect("task"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut times = Vec::new();
    let mut order = Vec::new();
    for (who, _) in &admitted {
        let status = queue.status(&room, who, &open).await.expect("status");
        let Some(EntryStatus::Admitted {
            ticket,
            admitted_at_ms,
        }) = status
        else {
            panic!("{who:?} admitted but {status:?}");
        };
        times.push(admitted_at_ms);
        order.push((admitted_at_ms, ticket));
    }
    let most = most_in_any_interval(&mut times, interval_ms);
    assert!(
        most <= admissions as usize,
        "{most} admitted within {interval_ms} ms, more than {admissions}: {times:?}"
    );
    let distinct: HashSet<_> = admitted.iter().map(|(who, _)| who.clone()).collect();
    assert_eq!(distinct.len(), 40, "each admitted once");
    // First in, first admitted: whoever was let in earlier holds an earlier ticket.
    order.sort_unstable();
    assert!(
        order.windows(2).all(|w| w[0].1 < w[1].1),
        "admitted out of ticket order: {order:?}"
    );
}

/// A paused (not admitting) room admits nobody; a buyer silent past the heartbeat timeout is
/// dropped, never admitted; one who keeps asking is.
pub async fn silent_buyers_are_dropped_and_a_paused_room_admits_nobody(
    queue: Arc<dyn WaitingRoomQueue>,
) {
    let room = fresh_room();
    let mut paused = rules(10, 86_400_000, false);
    paused.heartbeat_timeout = Duration::from_secs(1);
    let (silent, present) = (buyer(1), buyer(2));
    queue
        .join(&room, &silent, None, &paused)
        .await
        .expect("join");
    queue
        .join(&room, &present, None, &paused)
        .await
        .expect("join");
    assert!(
        queue.tick(&room, &paused).await.expect("tick").is_empty(),
        "paused"
    );

    // Keep one buyer's heartbeat going until the other has been silent long enough.
    let silent_since = Instant::now();
    while silent_since.elapsed() < Duration::from_millis(1_500) {
        queue
            .status(&room, &present, &paused)
            .await
            .expect("status")
            .expect("present");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open = QueueRules {
        admitting: true,
        ..paused
    };
    let admitted = queue.tick(&room, &open).await.expect("tick");
    assert_eq!(
        admitted.iter().map(|(who, _)| who).collect::<Vec<_>>(),
        [&present]
    );
    assert_eq!(
        queue.status(&room, &silent, &open).await.expect("status"),
        None,
        "dropped"
    );
}

/// A buyer the queue lost comes back at the ticket of their queue token, and new tickets never
/// collide with it; a buyer who leaves is gone.
pub async fn a_returning_buyer_keeps_their_ticket(queue: Arc<dyn WaitingRoomQueue>) {
    let room = fresh_room();
    let closed = rules(10, 1_000, false);
    let back = queue
        .join(&room, &buyer(1), Some(Ticket(7)), &closed)
        .await
        .expect("join");
    assert_eq!(ticket_of(&back), 7);
    let new = queue
        .join(&room, &buyer(2), None, &closed)
        .await
        .expect("join");
    assert!(ticket_of(&new) > 7, "{new:?}");
    assert!(
        matches!(new, EntryStatus::Waiting { position: 2, .. }),
        "{new:?}"
    );
    assert!(queue.leave(&room, &buyer(1)).await.expect("leave"));
    assert!(!queue.leave(&room, &buyer(1)).await.expect("leave"));
    assert_eq!(
        queue
            .status(&room, &buyer(1), &closed)
            .await
            .expect("status"),
        None
    );
    let moved_up = queue
        .status(&room, &buyer(2), &closed)
        .await
        .expect("status");
    assert!(matches!(
        moved_up,
        Some(EntryStatus::Waiting {
            position: 1,
            waiting: 1,
            ..
        })
    ));
}

/// Declares one `#[tokio::test]` per admission-queue check; `$make` is an async expression giving
/// an `Arc<dyn WaitingRoomQueue>`.
#[macro_export]
macro_rules! waiting_room_queue_contract_tests {
    ($make:expr) => {
        $crate::waiting_room_queue_contract_tests!(@each $make;
            tickets_are_unique_and_positions_follow_them,
            a_quiet_room_admits_at_once,
            the_rate_holds_across_concurrent_tickers_in_ticket_order,
            silent_buyers_are_dropped_and_a_paused_room_admits_nobody,
            a_returning_buyer_keeps_their_ticket,
            a_queue_set_to_expire_is_forgotten,
            buyers_queued_before_the_opening_are_let_in_in_a_drawn_order,
            buyers_joining_across_a_window_boundary_never_exceed_the_rate_in_any_interval,
            admissions_pause_while_the_holding_limit_is_reached
        );
    };
    (@each $make:expr; $($check:ident),+) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            $crate::waiting_room::$check($make.await).await;
        }
    )+};
}
