//! Fans the store's announcements of changed orders out to the readers waiting for them: one
//! `watch` channel per order that someone waits for, bounded per instance and per caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ordership_domain::OrderId;
use ordership_domain::ports::{OrderChangeFeed, OrderChanges};
use tokio::sync::watch;

use crate::Shutdown;

/// How many readers may wait for orders at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    /// On this instance, all callers together.
    pub per_instance: usize,
    /// Per caller (the token's subject).
    pub per_caller: usize,
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self {
            per_instance: 10_000,
            per_caller: 64,
        }
    }
}

/// Why a reader may not wait now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WatchRefused {
    #[error("this instance follows as many orders as it may")]
    InstanceFull,
    #[error("the caller follows as many orders as they may")]
    CallerFull,
}

#[derive(Debug, Default)]
struct Registry {
    orders: HashMap<OrderId, watch::Sender<u64>>,
    per_caller: HashMap<String, usize>,
    total: usize,
}

/// The readers waiting for orders on this instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OrderWatches {
    registry: Arc<Mutex<Registry>>,
    limits: WatchLimits,
}

impl OrderWatches {
    #[must_use]
    pub fn new(limits: WatchLimits) -> Self {
        Self {
            registry: Arc::default(),
            limits,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry is consistent after every statement: a panic elsewhere leaves it usable.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many readers wait now.
    #[must_use]
    pub fn open(&self) -> usize {
        self.registry().total
    }

    /// Starts waiting for changes of `order` on behalf of `caller`. Register first, then read the
    /// order: a change committed after the read is then never missed.
    ///
    /// # Errors
    /// [`WatchRefused`] when the instance's or the caller's limit is reached.
    pub fn watch(&self, order: OrderId, caller: &str) -> Result<Watch, WatchRefused> {
        let mut registry = self.registry();
        let mine = registry.per_caller.get(caller).copied().unwrap_or(0);
        if mine >= self.limits.per_caller {
            return Err(WatchRefused::CallerFull);
        }
        if registry.total >= self.limits.per_instance {
            return Err(WatchRefused::InstanceFull);
        }
        registry.total += 1;
        registry.per_caller.insert(caller.to_owned(), mine + 1);
        let receiver = registry
            .orders
            .entry(order)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Ok(Watch {
            receiver: Some(receiver),
            order,
            caller: caller.to_owned(),
            watches: self.clone(),
        })
    }

    /// Wakes the readers of the orders announced (all of them when announcements were missed).
    pub fn announce(&self, changes: &OrderChanges) {
        let registry = self.registry();
        let bump = |sender: &watch::Sender<u64>| sender.send_modify(|n| *n = n.wrapping_add(1));
        match changes {
            OrderChanges::Changed(orders) => {
                for order in orders {
                    if let Some(sender) = registry.orders.get(order) {
                        bump(sender);
                    }
                }
            }
            OrderChanges::Missed => registry.orders.values().for_each(bump),
        }
    }

    /// Forwards the feed's announcements to the readers until shutdown.
    pub async fn run(&self, feed: Arc<dyn OrderChangeFeed>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                changes = feed.next() => self.announce(&changes),
                () = shutdown.requested() => return,
            }
        }
    }
}

/// One reader's registration: resolves [`Watch::changed`] when its order may have changed.
/// Dropping it frees its place.
#[derive(Debug)]
pub struct Watch {
    /// `None` only while dropping.
    receiver: Option<watch::Receiver<u64>>,
    order: OrderId,
    caller: String,
    watches: OrderWatches,
}

impl Watch {
    /// Returns when the order may have changed since the watch began or since the last call.
    pub async fn changed(&mut self) {
        match self.receiver.as_mut() {
            Some(receiver) => {
                // The sender lives while any receiver does.
                if receiver.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut registry = self.watches.registry();
        registry.total = registry.total.saturating_sub(1);
        if let Some(n) = registry.per_caller.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                registry.per_caller.remove(&self.caller);
            }
        }
        if registry
            .orders
            .get(&self.order)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            registry.orders.remove(&self.order);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: u128) -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(n))
    }

    #[tokio::test]
    async fn an_announced_order_wakes_its_readers_and_only_them() {
        let watches = OrderWatches::new(WatchLimits::default());
        let mut a = watches.watch(order(1), "c-1").expect("room");
        let mut b = watches.watch(order(2), "c-1").expect("room");
        watches.announce(&OrderChanges::Changed(vec![order(1)]));
        tokio::time::timeout(std::time::Duration::from_secs(1), a.changed())
            .await
            .expect("woken");
        let b_woken = b.receiver.as_ref().map(|r| r.has_changed().ok());
        assert_eq!(
            b_woken,
            Some(Some(false)),
            "another order's reader stays asleep"
        );
        watches.announce(&OrderChanges::Missed);
        tokio::time::timeout(std::time::Duration::from_secs(1), b.changed())
            .await
            .expect("woken when announcements were missed");
    }

    #[test]
    fn readers_are_bounded_per_caller_and_per_instance_and_freed_on_drop() {
        let watches = OrderWatches::new(WatchLimits {
            per_instance: 3,
            per_caller: 2,
        });
        let first = watches.watch(order(1), "c-1").expect("room");
        let _second = watches.watch(order(1), "c-1").expect("room");
        assert_eq!(
            watches.watch(order(2), "c-1").err(),
            Some(WatchRefused::CallerFull)
        );
        let _third = watches.watch(order(2), "c-2").expect("room");
        assert_eq!(
            watches.watch(order(3), "c-3").err(),
            Some(WatchRefused::InstanceFull)
        );
        drop(first);
        assert_eq!(watches.open(), 2);
        watches.watch(order(3), "c-1").expect("a place was freed");
        assert!(
            watches.registry().orders.len() <= 3,
            "an order nobody waits for is forgotten"
        );
    }
}
