//! The admission queue's contract for the holding limit: admissions pause while the room's limit
//! of admitted buyers who have not ordered yet is reached, and resume as they order, leave, or
//! let their admission expire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordership_domain::ports::{QueueRules, WaitingRoomQueue};
use ordership_domain::waiting_room::EntryStatus;

use super::{buyer, fresh_room, rules};

/// Who `tick` admits, by buyer number.
async fn ticked(
    queue: &dyn WaitingRoomQueue,
    room: &ordership_domain::waiting_room::RoomId,
    rules: &QueueRules,
) -> Vec<String> {
    let admitted = queue.tick(room, rules).await.expect("tick");
    admitted
        .into_iter()
        .map(|(who, _)| who.as_str().to_owned())
        .collect()
}

/// Two may hold an admission at once: the third buyer waits, however much the rate leaves, until
/// one of the two orders (released), leaves, or holds an admission that has expired.
pub async fn admissions_pause_while_the_holding_limit_is_reached(queue: Arc<dyn WaitingRoomQueue>) {
    let room = fresh_room();
    let limited = QueueRules {
        holding_limit: Some(2),
        admission_validity: Duration::from_secs(300),
        ..rules(100, 60_000, true)
    };
    let mut told = Vec::new();
    for i in 0..5 {
        let status = queue
            .join(&room, &buyer(i), None, &limited)
            .await
            .expect("join");
        told.push(matches!(status, EntryStatus::Admitted { .. }));
    }
    assert_eq!(
        told,
        [true, true, false, false, false],
        "two hold admissions, the rest wait"
    );
    assert!(
        ticked(queue.as_ref(), &room, &limited).await.is_empty(),
        "the limit is reached"
    );
    let stats = queue.stats(&room, &limited).await.expect("stats");
    assert_eq!((stats.holding, stats.waiting), (2, 3));

    queue
        .release(&room, &buyer(0))
        .await
        .expect("buyer 0 ordered");
    queue
        .release(&room, &buyer(0))
        .await
        .expect("told twice: no more room");
    assert_eq!(
        ticked(queue.as_ref(), &room, &limited).await,
        [buyer(2).as_str()]
    );
    assert!(ticked(queue.as_ref(), &room, &limited).await.is_empty());

    assert!(queue.leave(&room, &buyer(1)).await.expect("buyer 1 leaves"));
    assert_eq!(
        ticked(queue.as_ref(), &room, &limited).await,
        [buyer(3).as_str()]
    );

    // Admissions valid for 300 ms: once buyers 2 and 3 hold expired ones, buyer 4 gets in.
    let short = QueueRules {
        admission_validity: Duration::from_millis(300),
        ..limited
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let admitted = ticked(queue.as_ref(), &room, &short).await;
        if !admitted.is_empty() {
            assert_eq!(admitted, [buyer(4).as_str()]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expired admissions stop holding the room up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = queue.stats(&room, &short).await.expect("stats");
    assert_eq!(
        (stats.holding, stats.waiting),
        (1, 0),
        "only buyer 4's admission is unexpired"
    );
}
