//! Test fixtures every suite shares: a valid order, messages and envelopes made up by a test, the
//! JSON body of `POST /orders`, and polling with a deadline (tests never sleep to synchronise).

use std::time::Duration;

use ordership_application::messages::Envelope;
use ordership_domain::{
    CustomerId, Message, MessageId, PlaceOrder, ShippingAddress, parse_order_line,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// How long a test waits for something that should happen before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A valid order of two `ABC-123` at 12.50 KRW, to `country`.
#[must_use]
pub fn place_order(country: &str) -> PlaceOrder {
    let line = parse_order_line(0, "ABC-123", 2, 1250, "KRW").expect("line");
    let address =
        ShippingAddress::new("Kim", "1 Sejong-daero", "Seoul", "04524", country).expect("address");
    PlaceOrder::new(
        CustomerId::parse("c-42").expect("customer"),
        vec![line],
        address,
    )
    .expect("order")
}

/// The same order as the JSON body of `POST /orders`.
#[must_use]
pub fn order_json(country: &str) -> Value {
    json!({
        "lines": [{ "sku": "ABC-123", "quantity": 2, "unit_price": { "amount": 1250, "currency": "KRW" } }],
        "shipping_address": { "recipient": "Kim", "line1": "1 Sejong-daero", "city": "Seoul",
                              "postal_code": "04524", "country": country }
    })
}

/// A message `{"n": n}` on `topic` with `key`, stamped now (to the microsecond, which every
/// transport and store keeps exactly).
#[must_use]
pub fn message(topic: &str, key: &str, n: u64) -> Message {
    Message {
        id: MessageId::from_uuid(Uuid::now_v7()),
        topic: topic.to_owned(),
        key: key.to_owned(),
        message_type: "ordership.test.v1".to_owned(),
        source: "/test".to_owned(),
        payload: json!({ "n": n }),
        correlation_id: Uuid::now_v7(),
        causation_id: Some(MessageId::from_uuid(Uuid::now_v7())),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()),
        occurred_at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
    }
}

/// The envelope of a message a test makes up, stamped now.
#[must_use]
pub fn envelope() -> Envelope {
    Envelope {
        id: MessageId::from_uuid(Uuid::now_v7()),
        source: "/test",
        at: chrono::Utc::now(),
        causation: None,
    }
}

/// Polls `done` until it holds; fails the test after [`PATIENCE`].
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
