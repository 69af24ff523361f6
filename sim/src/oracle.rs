//! The oracle: what must hold at the end of every run, after the faults stopped and the system
//! quiesced. Each check names the guarantee it guards; a finding is a line of text.
//!
//! To add an invariant: write a function here that reads the world (stores, broker, clients)
//! and pushes what it finds, and call it from [`check`].

use std::collections::{BTreeMap, BTreeSet};

use ordership_domain::{
    DeliveryStatus, Message, MessageId, OrderId, OrderStatus, SagaState, topics,
};

use ordership_memory::MemoryStore;

use crate::clients::Clients;
use crate::world::World;

/// Whether nothing is left to do: no message waits in an outbox or for a consumer, and every
/// saga has ended.
pub async fn settled(world: &World) -> bool {
    world.broker.waiting().is_empty()
        && drained(&world.order.host.store).await
        && drained(&world.delivery.host.store).await
        && world.order.host.store.sagas().await.iter().all(|s| {
            matches!(
                s.state(),
                SagaState::Completed | SagaState::Compensated | SagaState::Failed
            )
        })
}

/// Whether every message of `store`'s outbox was published.
async fn drained(store: &MemoryStore) -> bool {
    store
        .outbox_messages()
        .await
        .iter()
        .all(|(_, published)| *published)
}

/// Every finding of the oracle (none: the run passed).
pub async fn check(world: &World, clients: &Clients, sale: bool) -> Vec<String> {
    let mut found = Vec::new();
    answers(clients, world.sold_out().await, &mut found);
    sagas_and_deliveries(world, clients, &mut found).await;
    messages(world, &mut found).await;
    order_events(world, &mut found).await;
    if sale {
        crate::sale::check(&world.queue, &world.order.host.store, &mut found).await;
    }
    found
}

/// Every request was answered (but a buyer's who found the sale sold out, which it still is),
/// every answer to one key the same, and one order per client.
fn answers(clients: &Clients, sold_out: bool, found: &mut Vec<String>) {
    for request in &clients.requests {
        let turned_away = request.buyer.as_ref().is_some_and(|b| b.sold_out);
        if request.answers.is_empty() && !(turned_away && sold_out) {
            found.push(format!("idempotency: {} was never answered", request.key));
        }
        if request.answers.windows(2).any(|pair| pair[0] != pair[1]) {
            let answers: Vec<_> = request
                .answers
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            found.push(format!(
                "idempotency: {} answered differently: {answers:?}",
                request.key
            ));
        }
        for refusal in &request.refusals {
            found.push(format!("idempotency: {} refused: {refusal}", request.key));
        }
    }
}

async fn sagas_and_deliveries(world: &World, clients: &Clients, found: &mut Vec<String>) {
    let orders = world.order.host.store.orders().await;
    let sagas: BTreeMap<OrderId, SagaState> = world
        .order
        .host
        .store
        .sagas()
        .await
        .iter()
        .map(|s| (s.order_id(), s.state()))
        .collect();
    let mut deliveries: BTreeMap<OrderId, Vec<DeliveryStatus>> = BTreeMap::new();
    for delivery in world.delivery.host.store.deliveries().await {
        deliveries
            .entry(delivery.order_id())
            .or_default()
            .push(delivery.status());
    }
    let mut per_customer: BTreeMap<String, u32> = BTreeMap::new();
    for order in &orders {
        let id = order.id();
        *per_customer
            .entry(order.customer_id().as_str().to_owned())
            .or_default() += 1;
        let saga = sagas.get(&id).copied();
        let live = deliveries.get(&id).map_or(0, |d| {
            d.iter()
                .filter(|s| **s != DeliveryStatus::Cancelled)
                .count()
        });
        let all = deliveries.get(&id).map_or(0, Vec::len);
        match (order.status(), saga) {
            (OrderStatus::Confirmed, Some(SagaState::Completed)) if live == 1 && all == 1 => {}
            (OrderStatus::Cancelled, Some(SagaState::Compensated)) if live == 0 && all <= 1 => {}
            (status, saga) => found.push(format!(
                "saga: order {id} ended {status} with saga {saga:?}, {live} live of {all} deliveries"
            )),
        }
    }
    for (customer, n) in per_customer {
        if n > 1 {
            found.push(format!(
                "idempotency: customer {customer} has {n} orders for one request"
            ));
        }
    }
    let known: BTreeSet<OrderId> = orders.iter().map(ordership_domain::Order::id).collect();
    for order in clients.placed() {
        if !known.contains(&order) {
            found.push(format!(
                "idempotency: order {order} answered as placed does not exist"
            ));
        }
    }
    for (order, list) in &deliveries {
        if !known.contains(order) {
            found.push(format!(
                "delivery: {} deliveries for unknown order {order}",
                list.len()
            ));
        }
    }
}

/// Outboxes drained, nothing marked published that the broker does not have, every message
/// consumed once, a duplicate without effect, nothing dead-lettered.
async fn messages(world: &World, found: &mut Vec<String>) {
    let mut in_log: BTreeSet<MessageId> = BTreeSet::new();
    for topic in topics::ALL {
        in_log.extend(world.broker.messages(topic).iter().map(|m| m.id));
    }
    let mut written: Vec<Message> = Vec::new();
    for (name, store) in [
        ("order", &world.order.host.store),
        ("delivery", &world.delivery.host.store),
    ] {
        for (message, published) in store.outbox_messages().await {
            if !published {
                found.push(format!(
                    "outbox: {name} outbox still holds {} {}",
                    message.message_type, message.id
                ));
            } else if !in_log.contains(&message.id) {
                found.push(format!(
                    "lost: {} {} marked published, never reached the broker",
                    message.message_type, message.id
                ));
            }
            written.push(message);
        }
    }
    let consumers = [
        (
            topics::DELIVERY_COMMANDS,
            ordership_application::deliveries::CONSUMER,
            &world.delivery.host.store,
        ),
        (
            topics::DELIVERY_EVENTS,
            ordership_application::saga::CONSUMER,
            &world.order.host.store,
        ),
    ];
    for (topic, consumer, store) in consumers {
        for message in world.broker.messages(topic) {
            if !store.inbox_holds(consumer, message.id).await {
                found.push(format!(
                    "lost: {consumer} never took effect of {} {}",
                    message.message_type, message.id
                ));
            }
        }
    }
    for dead in world.broker.dead_letters() {
        found.push(format!(
            "dead letter: {} gave up on {} {}: {}",
            dead.group, dead.message.message_type, dead.message.id, dead.reason
        ));
    }
    // One handling of a message writes at most one message of a type caused by it: two mean it
    // took effect twice.
    let mut caused: BTreeMap<(MessageId, &str), u32> = BTreeMap::new();
    for message in &written {
        if let Some(cause) = message.causation_id {
            *caused
                .entry((cause, message.message_type.as_str()))
                .or_default() += 1;
        }
    }
    for ((cause, kind), n) in caused {
        if n > 1 {
            found.push(format!("duplicate effect: {cause} caused {n} {kind}"));
        }
    }
}

/// One order's events, as the world sees them on the order-events topic: in the order the
/// order's state machine allows, and its cancellation (the compensation) announced once.
async fn order_events(world: &World, found: &mut Vec<String>) {
    let mut per_order: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let mut seen: BTreeSet<MessageId> = BTreeSet::new();
    let log = world.broker.messages(topics::ORDER_EVENTS);
    for message in &log {
        if seen.insert(message.id) {
            per_order
                .entry(message.key.clone())
                .or_default()
                .push(kind(&message.message_type));
        }
    }
    for order in world.order.host.store.orders().await {
        let events = per_order
            .remove(&order.id().to_string())
            .unwrap_or_default();
        let cancels = events.iter().filter(|e| **e == "cancelled").count();
        let expected = usize::from(order.status() == OrderStatus::Cancelled);
        if cancels != expected {
            found.push(format!(
                "compensation: order {} ({}) announced cancelled {cancels} times",
                order.id(),
                order.status()
            ));
        }
        let mut state = "none";
        for event in &events {
            let allowed = matches!(
                (state, *event),
                ("none", "placed")
                    | ("placed", "confirmed" | "cancelled")
                    | ("confirmed", "cancelled" | "shipped")
                    | ("shipped", "delivered")
            );
            if !allowed {
                found.push(format!(
                    "order events: order {} has {event} after {state}: {events:?}",
                    order.id()
                ));
                break;
            }
            state = event;
        }
    }
}

fn kind(message_type: &str) -> &'static str {
    ["placed", "confirmed", "cancelled", "shipped", "delivered"]
        .into_iter()
        .find(|k| message_type.starts_with(&format!("ordership.order.{k}")))
        .unwrap_or("other")
}
