//! Liveness and readiness checks.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use ordership_domain::ports::UnitOfWork;

/// Something the service needs in order to be ready (a database, a broker).
#[async_trait]
pub trait HealthCheck: Send + Sync {
    fn name(&self) -> &str;

    /// # Errors
    /// Why the dependency is not usable now.
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
        self.uow.begin().await.map(drop).map_err(|e| e.to_string())
    }
}
