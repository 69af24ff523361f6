//! The in-memory adapters: the whole system on in-memory stores and the in-process bus (the
//! embedded mode). Nothing to install.

use std::sync::Arc;

use ordership_memory::MemoryStore;

use super::{Running, Side, Stores, SystemConfig, Transport, start};

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
            orders: Some(Side {
                store: Arc::new(order_store.clone()),
                transactions: Arc::new(order_store.clone()),
                outbox: Arc::new(order_store.clone()),
                leases: Arc::new(order_store.clone()),
                feed: None,
            }),
            deliveries: Some(Side {
                store: Arc::new(delivery_store.clone()),
                transactions: Arc::new(delivery_store.clone()),
                outbox: Arc::new(delivery_store.clone()),
                leases: Arc::new(delivery_store.clone()),
                feed: None,
            }),
            waiting_rooms: Some(Arc::new(order_store.clone())),
            order_changes: Some(Arc::new(order_store.order_changes())),
        };
        let bus = ordership_memory::InProcessBus::new(config.bus.clone());
        Self {
            app: start(config, &stores, Transport::Bus(bus)),
            order_store,
            delivery_store,
        }
    }
}
