//! Liveness and readiness checks.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use ordership_domain::ports::{StoreError, UnitOfWork};
use ordership_domain::retry::error_chain;

/// Something the service needs in order to be ready (a database, a broker).
#[async_trait]
pub trait HealthCheck: Send + Sync {
    fn name(&self) -> &str;

    /// Whether the service is unready while this check fails (default); `false` reports the
    /// dependency without taking the service out of rotation.
    fn required(&self) -> bool {
        true
    }

    /// # Errors
    /// Why the dependency is not usable now, in a few words for anyone who can read
    /// `/health/ready` (which is public): never a driver's raw message, which goes to the log.
    async fn check(&self) -> Result<(), String>;
}

/// Ready when a transaction can be opened on the store.
pub struct StoreCheck<Tx: ?Sized> {
    name: String,
    uow: Arc<dyn UnitOfWork<Tx>>,
    _tx: PhantomData<fn() -> Box<Tx>>,
}

impl<Tx: ?Sized> std::fmt::Debug for StoreCheck<Tx> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCheck")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<Tx: ?Sized + Send> StoreCheck<Tx> {
    #[must_use]
    pub fn new(name: &str, uow: Arc<dyn UnitOfWork<Tx>>) -> Self {
        Self {
            name: name.to_owned(),
            uow,
            _tx: PhantomData,
        }
    }
}

#[async_trait]
impl<Tx: ?Sized + Send + 'static> HealthCheck for StoreCheck<Tx> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn check(&self) -> Result<(), String> {
        // Dropping the transaction rolls it back.
        self.uow.begin().await.map(drop).map_err(|e| {
            tracing::warn!(check = %self.name, error = %error_chain(&e), "readiness check failed");
            match e {
                StoreError::Unavailable(_) => "unreachable".to_owned(),
                _ => "failing".to_owned(),
            }
        })
    }
}

/// The waiting rooms' queue (Redis): reported, never required — while it is down, joins and
/// orders for gated products are refused with 503 and everything else flows.
#[derive(Debug, Clone)]
pub struct WaitingRoomCheck(pub ordership_application::WaitingRoomService);

#[async_trait]
impl HealthCheck for WaitingRoomCheck {
    fn name(&self) -> &str {
        "waiting-room-queue"
    }

    fn required(&self) -> bool {
        false
    }

    async fn check(&self) -> Result<(), String> {
        self.0.probe().await.map_err(|e| {
            tracing::warn!(error = %error_chain(&e), "waiting-room queue check failed");
            "unreachable: joins and orders for gated products are refused".to_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use ordership_domain::ports::Transaction;

    use super::*;

    /// A store whose driver says too much.
    struct Down;

    #[async_trait]
    impl UnitOfWork<dyn Transaction> for Down {
        async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
            Err(StoreError::Unavailable(
                "connection to 10.0.0.7:5432 refused: password authentication failed for user \"svc\""
                    .into(),
            ))
        }
    }

    #[tokio::test]
    async fn a_failing_store_is_reported_without_the_drivers_words() {
        let uow: Arc<dyn UnitOfWork<dyn Transaction>> = Arc::new(Down);
        let check = StoreCheck::new("order-store", uow);
        assert_eq!(check.check().await, Err("unreachable".to_owned()));
    }
}
