//! Crash recovery on PostgreSQL: `SIGKILL` while orders are in flight, restart, and every
//! accepted order is there exactly once and reaches its terminal state.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ordership_postgres::testing::fresh_database_url;
use serde_json::Value;

use crate::binary::{Process, http, order, start, terminate, try_http};

const ORDERS: usize = 300;

fn country(i: usize) -> &'static str {
    if i % 4 == 3 {
        "BR"
    } else {
        ["KR", "JP", "US", "DE"][i % 4]
    }
}

async fn start_on(url: &str) -> Process {
    start(&[
        "all",
        "--database-url",
        url,
        "--reply-timeout",
        "1s",
        "--sweep-interval",
        "200ms",
    ])
    .await
}

/// Every order of the deployment, through the paginated list.
async fn all_orders(addr: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = http(addr, "GET", &format!("/orders?limit=200{after}"), None).await;
        assert_eq!(status, 200);
        let page: Value = serde_json::from_slice(&body).expect("json");
        orders.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => after = format!("&after={cursor}"),
            None => return orders,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_and_restart_every_accepted_order_is_there_once_and_terminal() {
    let url = fresh_database_url().await;
    let mut process = start_on(&url).await;
    let addr = process.addr.clone();

    // Clients place orders, each with its own key, 20 at a time; the process dies mid-way.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(20));
    for i in 0..ORDERS {
        let (addr, answered, permits) = (addr.clone(), answered.clone(), permits.clone());
        clients.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let reply = try_http(
                &addr,
                "POST",
                "/orders",
                Some(&order(country(i), i)),
                Some(&format!("key-{i}")),
            )
            .await;
            let id = reply.filter(|(status, _)| *status == 201).map(|(_, body)| {
                answered.fetch_add(1, Ordering::Relaxed);
                let order: Value = serde_json::from_slice(&body).expect("json");
                order["id"].as_str().expect("id").to_owned()
            });
            (i, id)
        });
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.load(Ordering::Relaxed) < ORDERS / 3 {
        assert!(
            Instant::now() < deadline,
            "orders were not accepted in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    process.child.start_kill().expect("SIGKILL");
    process.child.wait().await.expect("killed");

    let mut accepted: HashMap<usize, String> = HashMap::new();
    let mut unanswered = Vec::new();
    while let Some(done) = clients.join_next().await {
        match done.expect("client") {
            (i, Some(id)) => {
                accepted.insert(i, id);
            }
            (i, None) => unanswered.push(i),
        }
    }
    assert!(
        !unanswered.is_empty(),
        "the kill must interrupt some requests"
    );

    // Restart on the same database; clients retry what got no answer, with the same key.
    let process = start_on(&url).await;
    let addr = process.addr.clone();
    for i in unanswered {
        let (status, body) = try_http(
            &addr,
            "POST",
            "/orders",
            Some(&order(country(i), i)),
            Some(&format!("key-{i}")),
        )
        .await
        .expect("answer after restart");
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        let order: Value = serde_json::from_slice(&body).expect("json");
        accepted.insert(i, order["id"].as_str().expect("id").to_owned());
    }

    // Every order settles where its country says, exactly once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let orders = loop {
        let orders = all_orders(&addr).await;
        let settled = orders.iter().all(|o| {
            let state = o["saga"]["state"].as_str().unwrap_or_default();
            state != "awaiting_delivery" && state != "cancelling"
        });
        if settled && orders.len() >= ORDERS {
            break orders;
        }
        assert!(
            Instant::now() < deadline,
            "orders did not settle after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        orders.len(),
        ORDERS,
        "one order per key: none lost, none duplicated"
    );
    let by_id: HashMap<&str, &Value> = orders
        .iter()
        .map(|o| (o["id"].as_str().expect("id"), o))
        .collect();
    for (i, id) in &accepted {
        let order = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("accepted order {id} is missing"));
        let (status, body) = http(&addr, "GET", &format!("/deliveries?order_id={id}"), None).await;
        assert_eq!(status, 200);
        let deliveries: Value = serde_json::from_slice(&body).expect("json");
        let deliveries = deliveries["items"].as_array().expect("items");
        if country(*i) == "BR" {
            assert_eq!(
                (order["status"].as_str(), order["saga"]["state"].as_str()),
                (Some("cancelled"), Some("compensated"))
            );
            assert!(deliveries.is_empty(), "no delivery for a rejected order");
        } else {
            assert_eq!(
                (order["status"].as_str(), order["saga"]["state"].as_str()),
                (Some("confirmed"), Some("completed")),
                "{order}"
            );
            assert_eq!(deliveries.len(), 1);
            assert_eq!(deliveries[0]["id"], order["delivery_id"]);
        }
    }
    terminate(process).await;
}
