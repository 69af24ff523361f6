//! The dead-letter index's contract.

use chrono::Duration;
use ordership_domain::ports::{DeadLetterQuery, DeadLetterSelection};

use super::{OrderStore, t0};
use crate::fixtures::message;

fn query(consumer: Option<&str>, include_redriven: bool) -> DeadLetterQuery {
    DeadLetterQuery {
        consumer: consumer.map(str::to_owned),
        include_redriven,
        after: None,
        limit: 100,
    }
}

/// Dead letters: recorded once per consumer while dead, listed by consumer and cursor, taken for
/// re-driving by id or time range in the order they died (and marked), purged only while dead.
pub async fn dead_letters_are_indexed_redriven_and_purged(store: &OrderStore) {
    let (a, b, c) = (
        message("ordership.delivery.commands", "k1", 1),
        message("ordership.delivery.commands", "k1", 2),
        message("ordership.delivery.commands", "k2", 3),
    );
    let mut tx = store.begin().await.expect("begin");
    let letters = tx.dead_letters();
    letters
        .record("g1", &a, "bad", 3, t0())
        .await
        .expect("record");
    letters
        .record("g1", &a, "bad again", 4, t0())
        .await
        .expect("dead once");
    letters
        .record("g1", &b, "bad", 1, t0() + Duration::minutes(1))
        .await
        .expect("record");
    letters
        .record("g2", &c, "worse", 2, t0() + Duration::minutes(2))
        .await
        .expect("record");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let g1 = tx
        .dead_letters()
        .list(&query(Some("g1"), false))
        .await
        .expect("list");
    assert_eq!(g1.len(), 2, "a message dead already is not recorded twice");
    assert_eq!(
        (g1[0].message.clone(), g1[0].reason.as_str(), g1[0].attempts),
        (a.clone(), "bad", 3)
    );
    assert!(g1[0].id < g1[1].id);
    let all = tx
        .dead_letters()
        .list(&query(None, false))
        .await
        .expect("list");
    assert_eq!(all.len(), 3);
    let page = DeadLetterQuery {
        after: Some(all[0].id),
        limit: 1,
        ..query(None, false)
    };
    assert_eq!(
        tx.dead_letters().list(&page).await.expect("page"),
        [all[1].clone()]
    );
    assert_eq!(
        tx.dead_letters().get(all[2].id).await.expect("get"),
        Some(all[2].clone())
    );

    // By time range: the first minute of g1.
    let range = DeadLetterSelection::Between {
        from: t0(),
        to: t0() + Duration::seconds(30),
    };
    let taken = tx
        .dead_letters()
        .take_for_redrive(Some("g1"), &range, t0() + Duration::hours(1))
        .await
        .expect("take");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].message, a);
    assert_eq!(taken[0].redriven_at, Some(t0() + Duration::hours(1)));
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let dead = tx
        .dead_letters()
        .list(&query(None, false))
        .await
        .expect("list");
    assert_eq!(dead.len(), 2, "the re-driven one is no longer dead");
    assert_eq!(
        tx.dead_letters()
            .list(&query(None, true))
            .await
            .expect("list")
            .len(),
        3
    );
    // Re-driven, it may die again and be recorded anew.
    tx.dead_letters()
        .record("g1", &a, "still bad", 1, t0())
        .await
        .expect("record");
    let ids = DeadLetterSelection::Ids(vec![dead[1].id]);
    assert_eq!(
        tx.dead_letters()
            .purge(Some("g1"), &ids)
            .await
            .expect("purge"),
        0,
        "g2's"
    );
    assert_eq!(tx.dead_letters().purge(None, &ids).await.expect("purge"), 1);
    let rest = tx
        .dead_letters()
        .take_for_redrive(None, &DeadLetterSelection::All, t0())
        .await
        .expect("take");
    let messages: Vec<_> = rest.iter().map(|l| l.message.clone()).collect();
    assert_eq!(messages, [b, a], "in the order they died");
    tx.commit().await.expect("commit");
}
