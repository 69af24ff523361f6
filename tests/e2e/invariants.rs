//! The invariants every end-to-end test checks, and a recorder of published order events.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use ordership_domain::ports::{HandleError, HandleOutcome, MessageHandler};
use ordership_domain::{Delivery, Message, MessageId, Order, OrderStatus};

/// Subscribed to `ordership.order.events`: remembers what arrived, per order, in arrival order.
#[derive(Default)]
pub(crate) struct EventRecorder {
    seen: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    ids: HashSet<MessageId>,
    duplicates: u64,
    versions: HashMap<String, Vec<u64>>,
}

#[async_trait]
impl MessageHandler for EventRecorder {
    async fn handle(&self, message: &Message) -> Result<HandleOutcome, HandleError> {
        let mut seen = self.seen.lock().expect("lock");
        if !seen.ids.insert(message.id) {
            seen.duplicates += 1;
            return Ok(HandleOutcome::Duplicate);
        }
        let version = message.payload["version"]
            .as_u64()
            .ok_or_else(|| HandleError::Permanent("order event without version".into()))?;
        seen.versions
            .entry(message.key.clone())
            .or_default()
            .push(version);
        Ok(HandleOutcome::Applied)
    }
}

impl EventRecorder {
    /// Every order's events arrived once each, in version order, without gaps, up to the
    /// order's current version.
    pub(crate) fn check_in_order(&self, orders: &[Order]) -> Result<(), String> {
        self.check_versions(orders.iter().map(|o| (o.id().to_string(), o.version())))
    }

    /// Like [`Self::check_in_order`], from `(order id, current version)` pairs.
    pub(crate) fn check_versions(
        &self,
        orders: impl IntoIterator<Item = (String, u64)>,
    ) -> Result<(), String> {
        let seen = self.seen.lock().expect("lock");
        for (id, version) in orders {
            let versions = seen.versions.get(&id).map_or(&[][..], Vec::as_slice);
            let expected: Vec<u64> = (1..=version).collect();
            if versions != expected {
                return Err(format!(
                    "order {id}: events {versions:?}, expected {expected:?}"
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.seen.lock().expect("lock").duplicates
    }
}

/// What a finished run must satisfy.
pub(crate) fn assert_invariants(
    orders: &[Order],
    deliveries: &[Delivery],
    expect_confirmed: &dyn Fn(&Order) -> bool,
) {
    let mut per_order: HashMap<_, Vec<&Delivery>> = HashMap::new();
    for d in deliveries {
        per_order.entry(d.order_id()).or_default().push(d);
    }
    for order in orders {
        let live: Vec<_> = per_order
            .get(&order.id())
            .into_iter()
            .flatten()
            .filter(|d| d.status().is_live())
            .collect();
        assert!(
            live.len() <= 1,
            "order {} has {} live deliveries",
            order.id(),
            live.len()
        );
        if expect_confirmed(order) {
            assert_eq!(
                order.status(),
                OrderStatus::Confirmed,
                "order {}",
                order.id()
            );
            assert_eq!(
                live.len(),
                1,
                "confirmed order {} needs one live delivery",
                order.id()
            );
            assert_eq!(order.delivery_id(), Some(live[0].id()));
        } else {
            assert_eq!(
                order.status(),
                OrderStatus::Cancelled,
                "order {}",
                order.id()
            );
            assert!(
                !per_order.contains_key(&order.id()),
                "rejected order {} must have no delivery at all",
                order.id()
            );
        }
    }
}
