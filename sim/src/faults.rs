//! Faults, chosen by the seed and injected through decorators of the ports, never by editing a
//! use case: a process that dies at a port call (the call never returns; its unit of work is
//! rolled back; the driver drops what the process was doing), a store that refuses a commit
//! before it applied it or answers an error after it did (the ambiguous commit).
//!
//! A crash between two calls inside a transaction is the same as a crash before its commit (the
//! transaction rolls back and nothing outside it happened), so transactions die at `begin`,
//! just before `commit` and just after it; the transport's calls are decorated in
//! [`crate::broker`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use async_trait::async_trait;
use ordership_domain::FulfilmentSaga;
use ordership_domain::ports::{
    DeadLetters, DeliveryRepository, DeliveryTransaction, IdempotencyStore, Inbox, OrderRepository,
    OrderTransaction, Outbox, SagaRepository, StoreError, Transaction, UnitOfWork,
};
use ordership_domain::saga::SagaStepRecord;
use ordership_domain::{Order, OrderId};
use ordership_memory::MemoryStore;
use tokio::sync::Notify;

use crate::time::{Dice, WorldTime};
use crate::trace::Trace;

/// How often each fault strikes, per chance to strike (a `begin`, a commit, a publish).
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    pub begin_unavailable: f64,
    pub crash_before_commit: f64,
    pub commit_refused: f64,
    pub crash_after_commit: f64,
    pub ambiguous_commit: f64,
    pub publish_unavailable: f64,
    pub publish_partial: f64,
    pub publish_ack_lost: f64,
    pub crash_in_publish: f64,
    pub crash_in_handling: f64,
    /// Per call of the waiting room's queue (Redis in production).
    pub queue_unavailable: f64,
}

impl FaultRates {
    /// The rates of a run with faults.
    pub const DEFAULT: Self = Self {
        begin_unavailable: 0.01,
        crash_before_commit: 0.004,
        commit_refused: 0.02,
        crash_after_commit: 0.004,
        ambiguous_commit: 0.01,
        publish_unavailable: 0.03,
        publish_partial: 0.02,
        publish_ack_lost: 0.03,
        crash_in_publish: 0.005,
        crash_in_handling: 0.004,
        queue_unavailable: 0.03,
    };
}

/// What the world shares with every part that can fail: the dice, the trace, the time.
#[derive(Debug, Clone)]
pub struct Shared {
    pub dice: Arc<Dice>,
    pub trace: Arc<Trace>,
    pub world: Arc<WorldTime>,
    pub rates: FaultRates,
}

/// One process (the order service or the delivery service): whether faults strike it now,
/// whether it has died, and the signal the driver waits on to drop what it was doing.
#[derive(Debug)]
pub struct Process {
    pub name: &'static str,
    shared: Shared,
    faults_on: AtomicBool,
    crashed: AtomicBool,
    died: Notify,
}

impl Process {
    #[must_use]
    pub fn new(name: &'static str, shared: Shared) -> Self {
        Self {
            name,
            shared,
            faults_on: AtomicBool::new(false),
            crashed: AtomicBool::new(false),
            died: Notify::new(),
        }
    }

    pub fn set_faults(&self, on: bool) {
        self.faults_on.store(on, Relaxed);
    }

    #[must_use]
    pub fn is_crashed(&self) -> bool {
        self.crashed.load(Relaxed)
    }

    /// A new life after a crash.
    pub fn restarted(&self) {
        self.crashed.store(false, Relaxed);
    }

    /// Whether a fault of probability `p` strikes now (never while faults are off).
    #[must_use]
    pub fn strikes(&self, p: f64) -> bool {
        self.faults_on.load(Relaxed) && self.shared.dice.chance(p)
    }

    #[must_use]
    pub const fn rates(&self) -> &FaultRates {
        &self.shared.rates
    }

    /// Records a fault that does not kill.
    pub fn fault(&self, what: std::fmt::Arguments<'_>) {
        self.shared.trace.fault(
            self.shared.world.micros(),
            format_args!("{} {what}", self.name),
        );
    }

    /// The process dies here: the call never returns, and the driver drops what it was doing.
    pub async fn die<T>(&self, at: &str) -> T {
        self.fault(format_args!("crashes {at}"));
        self.crashed.store(true, Relaxed);
        self.died.notify_one();
        std::future::pending().await
    }

    /// Resolves once the process died (at once if it has).
    pub async fn death(&self) {
        if self.is_crashed() {
            return;
        }
        self.died.notified().await;
    }

    async fn begin(&self) -> Result<(), StoreError> {
        if self.strikes(self.rates().begin_unavailable) {
            self.fault(format_args!("store unavailable at begin"));
            return Err(StoreError::Unavailable("simulated: no connection".into()));
        }
        Ok(())
    }

    /// Commits through `commit` (not yet started: dropping it rolls the transaction back), with
    /// the faults of a commit around it.
    async fn commit(
        &self,
        commit: impl Future<Output = Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let rates = *self.rates();
        if self.strikes(rates.crash_before_commit) {
            return self.die("before a commit").await;
        }
        if self.strikes(rates.commit_refused) {
            let conflict = self.shared.dice.chance(0.5);
            self.fault(format_args!("commit refused (conflict: {conflict})"));
            return Err(if conflict {
                StoreError::Conflict
            } else {
                StoreError::Unavailable("simulated: connection lost before COMMIT".into())
            });
        }
        commit.await?;
        if self.strikes(rates.crash_after_commit) {
            return self.die("after a commit").await;
        }
        if self.strikes(rates.ambiguous_commit) {
            self.fault(format_args!("commit applied, answered with an error"));
            return Err(StoreError::Unavailable(
                "simulated: connection lost after COMMIT".into(),
            ));
        }
        Ok(())
    }
}

/// A service's store with the process's faults around its transactions.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    pub inner: MemoryStore,
    process: Arc<Process>,
}

impl FaultyStore {
    #[must_use]
    pub const fn new(inner: MemoryStore, process: Arc<Process>) -> Self {
        Self { inner, process }
    }
}

/// A transaction of a [`FaultyStore`].
struct FaultyTx<T: ?Sized> {
    inner: Box<T>,
    process: Arc<Process>,
}

macro_rules! faulty_transaction {
    ($tx:ty) => {
        #[async_trait]
        impl UnitOfWork<$tx> for FaultyStore {
            async fn begin(&self) -> Result<Box<$tx>, StoreError> {
                self.process.begin().await?;
                let inner = UnitOfWork::<$tx>::begin(&self.inner).await?;
                Ok(Box::new(FaultyTx {
                    inner,
                    process: Arc::clone(&self.process),
                }))
            }
        }

        #[async_trait]
        impl Transaction for FaultyTx<$tx> {
            fn outbox(&mut self) -> &mut dyn Outbox {
                self.inner.outbox()
            }
            fn inbox(&mut self) -> &mut dyn Inbox {
                self.inner.inbox()
            }
            fn dead_letters(&mut self) -> &mut dyn DeadLetters {
                self.inner.dead_letters()
            }
            async fn commit(self: Box<Self>) -> Result<(), StoreError> {
                let Self { inner, process } = *self;
                process.commit(inner.commit()).await
            }
        }
    };
}

faulty_transaction!(dyn OrderTransaction);
faulty_transaction!(dyn DeliveryTransaction);

#[async_trait]
impl OrderTransaction for FaultyTx<dyn OrderTransaction> {
    fn orders(&mut self) -> &mut dyn OrderRepository {
        self.inner.orders()
    }
    fn sagas(&mut self) -> &mut dyn SagaRepository {
        self.inner.sagas()
    }
    fn idempotency_keys(&mut self) -> &mut dyn IdempotencyStore {
        self.inner.idempotency_keys()
    }
    async fn lock_saga_with_order(
        &mut self,
        order_id: OrderId,
    ) -> Result<Option<(FulfilmentSaga, Order)>, StoreError> {
        self.inner.lock_saga_with_order(order_id).await
    }
    async fn update_order_and_saga_with_step(
        &mut self,
        order: &Order,
        expected_order_version: u64,
        saga: &FulfilmentSaga,
        expected_saga_version: u64,
        step: &SagaStepRecord,
    ) -> Result<(), StoreError> {
        self.inner
            .update_order_and_saga_with_step(
                order,
                expected_order_version,
                saga,
                expected_saga_version,
                step,
            )
            .await
    }
}

impl DeliveryTransaction for FaultyTx<dyn DeliveryTransaction> {
    fn deliveries(&mut self) -> &mut dyn DeliveryRepository {
        self.inner.deliveries()
    }
}
