//! The embedded mode: the whole system on in-memory stores. Nothing to install.

use std::sync::Arc;

use ordership_memory::MemoryStore;

use crate::wiring::{self, Running, Stores, SystemConfig};

/// A running embedded system, with its stores (for tests and checks).
pub struct Embedded {
    pub app: Running,
    pub order_store: MemoryStore,
    pub delivery_store: MemoryStore,
}

impl Embedded {
    /// Starts everything on two fresh in-memory stores. Must be called inside a Tokio runtime.
    #[must_use]
    pub fn start(config: &SystemConfig) -> Self {
        let order_store = MemoryStore::new();
        let delivery_store = MemoryStore::new();
        let stores = Stores {
            orders: Arc::new(order_store.clone()),
            order_outbox: Arc::new(order_store.clone()),
            deliveries: Arc::new(delivery_store.clone()),
            delivery_outbox: Arc::new(delivery_store.clone()),
        };
        Self {
            app: wiring::start(config, stores),
            order_store,
            delivery_store,
        }
    }
}
