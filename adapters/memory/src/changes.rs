//! Which orders changed, announced when their transactions commit: the in-memory
//! [`OrderChangeFeed`].

use async_trait::async_trait;
use ordership_domain::OrderId;
use ordership_domain::ports::{OrderChangeFeed, OrderChanges};
use tokio::sync::{Mutex, broadcast};

use crate::MemoryStore;

/// Listens to a [`MemoryStore`]'s commits of order steps.
#[derive(Debug)]
pub struct MemoryOrderChanges {
    receiver: Mutex<broadcast::Receiver<OrderId>>,
}

impl MemoryStore {
    /// A feed of the orders whose steps commit from now on.
    #[must_use]
    pub fn order_changes(&self) -> MemoryOrderChanges {
        MemoryOrderChanges {
            receiver: Mutex::new(self.changes.0.subscribe()),
        }
    }
}

#[async_trait]
impl OrderChangeFeed for MemoryOrderChanges {
    async fn next(&self) -> OrderChanges {
        let mut receiver = self.receiver.lock().await;
        match receiver.recv().await {
            Ok(first) => {
                let mut changed = vec![first];
                while let Ok(order_id) = receiver.try_recv() {
                    changed.push(order_id);
                }
                OrderChanges::Changed(changed)
            }
            Err(broadcast::error::RecvError::Lagged(_)) => OrderChanges::Missed,
            // The store is gone; nothing will change any more.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
