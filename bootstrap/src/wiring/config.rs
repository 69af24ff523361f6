//! What the running system is tuned with, and which stores it runs on.

use std::sync::Arc;
use std::time::Duration;

use ordership_application::{RelayConfig, RetentionConfig};
use ordership_domain::DeliveryPolicy;
use ordership_domain::SagaPolicy;
use ordership_domain::ports::{
    DeliveryTransaction, OrderTransaction, OutboxFeed, OutboxSignal, UnitOfWork,
};
use ordership_http::HttpConfig;
use ordership_memory::BusConfig;

/// Everything the running system can be tuned with.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub saga: SagaPolicy,
    pub policy: DeliveryPolicy,
    pub bus: BusConfig,
    pub relay: RelayConfig,
    pub sweep_interval: Duration,
    pub retention: RetentionConfig,
    pub http: HttpConfig,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            saga: SagaPolicy::default(),
            policy: DeliveryPolicy::default(),
            bus: BusConfig::default(),
            relay: RelayConfig::default(),
            sweep_interval: Duration::from_secs(1),
            retention: RetentionConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// One service's store and the wake-up signal of its outbox.
pub struct Side<Tx: ?Sized> {
    pub store: Arc<dyn UnitOfWork<Tx>>,
    pub outbox: Arc<dyn OutboxSignal>,
    /// The outbox read from the transaction log: set, the CDC relay publishes; unset, the
    /// polling relay.
    pub feed: Option<Arc<dyn OutboxFeed>>,
}

impl<Tx: ?Sized> Clone for Side<Tx> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            outbox: Arc::clone(&self.outbox),
            feed: self.feed.clone(),
        }
    }
}

/// The services this process runs, with their stores.
#[derive(Clone)]
pub struct Stores {
    pub orders: Option<Side<dyn OrderTransaction>>,
    pub deliveries: Option<Side<dyn DeliveryTransaction>>,
}
