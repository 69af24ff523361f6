//! A flash sale's end through the real binary on PostgreSQL: orders take the room's units in
//! their own transactions and never more than it has, a sold-out room says so to buyers who
//! join, and the units of a cancelled order come back, once, to the next buyer in the queue; a
//! deleted or closed room's queue leaves Redis after the key TTL.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::binary::{http, start};
use crate::waiting_room::{
    body, buyer, call, eventually, on_postgres, place, put_room, suite_redis, unique_room,
};

const SKU: &str = "FLASH-S";

async fn room_of(addr: &str, room: &str) -> Value {
    let (status, shown) = http(addr, "GET", &format!("/waiting-rooms/{room}"), None).await;
    assert_eq!(status, 200);
    body(&shown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_units_sell_to_exactly_five_of_twenty_buyers_and_a_cancelled_order_reopens_the_sale() {
    let process = on_postgres().await;
    let addr = process.addr.clone();
    let room = unique_room("stock");
    let entries = format!("/waiting-rooms/{room}/entries");
    put_room(
        &[&process],
        &room,
        &json!({"skus": [SKU], "admissions": 100, "interval_ms": 1000, "state": "open",
                "stock": 5}),
    )
    .await;

    // Twenty buyers, all admitted at once (the window holds 100), all ordering at once.
    let mut admitted = Vec::new();
    for i in 0..20 {
        let token = buyer(&format!("stock-{i}"));
        let (status, entry) = call(&addr, "POST", &entries, &token, &[], None).await;
        assert_eq!(status, 200, "{entry}");
        let admission = entry["admission_token"].as_str().expect("admission");
        admitted.push((token, admission.to_owned()));
    }
    let mut posts = tokio::task::JoinSet::new();
    for (token, admission) in admitted {
        let addr = addr.clone();
        posts.spawn(async move {
            let (status, answer) = place(&addr, &token, SKU, Some(&admission)).await;
            (status, answer, token)
        });
    }
    let mut statuses = BTreeMap::new();
    let mut placed = Vec::new();
    while let Some(done) = posts.join_next().await {
        let (status, answer, token) = done.expect("task");
        match status {
            201 => placed.push((token, answer["id"].as_str().expect("id").to_owned())),
            _ => assert_eq!(
                answer["type"], "https://ordership.dev/problems/sold-out",
                "{answer}"
            ),
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&201), Some(&5), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&15), "{statuses:?}");
    let shown = room_of(&addr, &room).await;
    assert_eq!(shown["stock"], json!({"total": 5, "sold": 5, "left": 0}));
    assert_eq!(shown["sold_out"], true);

    // A buyer joining now gets a place, not an admission.
    let late = buyer("stock-late");
    let (status, entry) = call(&addr, "POST", &entries, &late, &[], None).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["status"], "sold_out", "{entry}");
    assert!(entry["queue_token"].is_string(), "{entry}");

    // A cancelled order gives its unit back, once, however often it is asked to cancel.
    let (owner, order) = &placed[0];
    for _ in 0..2 {
        let (status, cancelled) = call(
            &addr,
            "POST",
            &format!("/orders/{order}/cancel"),
            owner,
            &[],
            None,
        )
        .await;
        // 200 cancelled at once while pending; 202 while a confirmed order's delivery is
        // being cancelled.
        assert!(status == 200 || status == 202, "{status}: {cancelled}");
    }
    eventually(Duration::from_secs(10), "the unit back on sale", || async {
        room_of(&addr, &room).await["stock"] == json!({"total": 5, "sold": 4, "left": 1})
    })
    .await;

    // The queue moves on: the late buyer is admitted in turn and buys the unit.
    let mine = format!("{entries}/me");
    let deadline = Instant::now() + Duration::from_secs(10);
    let admission = loop {
        let (_, entry) = call(&addr, "GET", &mine, &late, &[], None).await;
        if let Some(admission) = entry["admission_token"].as_str() {
            break admission.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "the late buyer admitted: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, answer) = place(&addr, &late, SKU, Some(&admission)).await;
    assert_eq!(status, 201, "{answer}");
    // The room shows counts as of its last read (within a second).
    eventually(Duration::from_secs(10), "sold out again", || async {
        room_of(&addr, &room).await["stock"] == json!({"total": 5, "sold": 5, "left": 0})
    })
    .await;

    // Units orders hold cannot be configured away.
    let (status, refused) = http(
        &addr,
        "PUT",
        &format!("/waiting-rooms/{room}"),
        Some(&json!({"skus": [SKU], "state": "open", "stock": 4})),
    )
    .await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&refused));
}

/// How many of `room`'s queue keys the suite's Redis holds.
async fn queue_keys(url: &str, room: &str) -> usize {
    let keys: Vec<String> = ["seq", "waiting", "entries", "meta", "recent"]
        .iter()
        .map(|k| format!("{{wr:{room}}}:{k}"))
        .collect();
    let output = tokio::process::Command::new("redis-cli")
        .args(["-u", url, "EXISTS"])
        .args(&keys)
        .output()
        .await
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a count of keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_room_and_a_closed_room_leave_redis_after_the_key_ttl() {
    let url = suite_redis();
    let database = ordership_postgres::testing::fresh_database_url().await;
    let process = start(&[
        "all",
        "--database-url",
        &database,
        "--redis-url",
        &url,
        "--waiting-room-key-ttl",
        "1s",
    ])
    .await;
    let addr = process.addr.clone();
    let (deleted, closed) = (unique_room("deleted"), unique_room("closed"));
    for room in [&deleted, &closed] {
        put_room(
            &[&process],
            room,
            &json!({"skus": [format!("{room}-SKU")], "admissions": 1, "interval_ms": 60000,
                    "state": "open"}),
        )
        .await;
        // One buyer admitted, one waiting: every key of the queue exists.
        for who in ["first", "second"] {
            let token = buyer(&format!("{room}-{who}"));
            let path = format!("/waiting-rooms/{room}/entries");
            let (status, entry) = call(&addr, "POST", &path, &token, &[], None).await;
            assert!(status == 200 || status == 202, "{entry}");
        }
        assert_eq!(queue_keys(&url, room).await, 5);
    }

    let (status, _) = http(&addr, "DELETE", &format!("/waiting-rooms/{deleted}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = http(&addr, "GET", &format!("/waiting-rooms/{deleted}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = http(&addr, "DELETE", &format!("/waiting-rooms/{deleted}"), None).await;
    assert_eq!(status, 404, "deleted once");
    put_room(
        &[&process],
        &closed,
        &json!({"skus": [format!("{closed}-SKU")], "state": "closed"}),
    )
    .await;
    for room in [&deleted, &closed] {
        eventually(Duration::from_secs(15), "the queue's keys gone", || async {
            queue_keys(&url, room).await == 0
        })
        .await;
    }
}
