//! The unit of work on one `sqlx::Transaction`: the stores that open it, the transaction types
//! of each service, and the helpers every repository shares.

use async_trait::async_trait;
use ordership_domain::ports::{
    DeadLetters, DeliveryRepository, DeliveryTransaction, Inbox, OrderTransaction, Outbox,
    StoreError, Transaction, UnitOfWork,
};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

use crate::error::{classify, corrupt, failed_in};
use crate::schema::{DELIVERY, ORDERS, Schema};

/// Where a unit of work's statements run.
pub(crate) enum Conn {
    /// An open transaction.
    Tx(sqlx::Transaction<'static, Postgres>),
    /// A pooled connection whose one read statement is its own transaction: one snapshot,
    /// with no `BEGIN` and no `COMMIT` to pay for.
    Single(PoolConnection<Postgres>),
}

impl std::ops::Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        match self {
            Self::Tx(tx) => tx,
            Self::Single(connection) => connection,
        }
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        match self {
            Self::Tx(tx) => tx,
            Self::Single(connection) => connection,
        }
    }
}

/// One open transaction on one service's schema.
pub struct PgTx {
    pub(crate) tx: Conn,
    pub(crate) schema: &'static Schema,
    /// A statement failed: PostgreSQL has aborted the transaction, and a `COMMIT` would silently
    /// roll back. Commit refuses instead.
    aborted: bool,
    /// How outbox messages are stored.
    pub(crate) outbox: OutboxMode,
}

/// How the outbox is relayed, which decides how messages are stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutboxMode {
    /// Rows stay until the polling relay marks them published (retention purges them later).
    #[default]
    Poll,
    /// Rows are inserted and deleted in the same transaction: the CDC relay reads the insert from
    /// the transaction log, and the table does not grow.
    Cdc,
}

impl PgTx {
    /// Classifies a failed statement and remembers that the transaction is now aborted.
    pub(crate) fn failed(&mut self, operation: &'static str, error: sqlx::Error) -> StoreError {
        self.aborted = true;
        classify(operation, error)
    }

    async fn commit(self) -> Result<(), StoreError> {
        if self.aborted {
            // Dropping rolls back.
            return Err(StoreError::Unexpected(
                "commit of a transaction in which a statement failed; it was rolled back".into(),
            ));
        }
        match self.tx {
            Conn::Tx(tx) => tx.commit().await.map_err(failed_in("unit_of_work::commit")),
            // Its statement committed when it ran.
            Conn::Single(_) => Ok(()),
        }
    }
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx")
            .field("schema", &self.schema.name)
            .finish_non_exhaustive()
    }
}

/// A transaction of the order service.
#[derive(Debug)]
pub struct PgOrderTx(pub(crate) PgTx);

/// A transaction of the delivery service.
#[derive(Debug)]
pub struct PgDeliveryTx(pub(crate) PgTx);

async fn begin(
    pool: &PgPool,
    schema: &'static Schema,
    outbox: OutboxMode,
) -> Result<PgTx, StoreError> {
    let tx = pool
        .begin()
        .await
        .map_err(failed_in("unit_of_work::begin"))?;
    Ok(PgTx {
        tx: Conn::Tx(tx),
        schema,
        aborted: false,
        outbox,
    })
}

/// One snapshot for every statement: under READ COMMITTED two reads could see different commits
/// (an order already confirmed beside its saga still waiting).
async fn begin_read_only(pool: &PgPool, schema: &'static Schema) -> Result<PgTx, StoreError> {
    let tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(failed_in("unit_of_work::begin_read_only"))?;
    Ok(PgTx {
        tx: Conn::Tx(tx),
        schema,
        aborted: false,
        outbox: OutboxMode::Poll,
    })
}

/// A unit of work for one read statement: a pooled connection, no transaction opened.
async fn begin_single_read(pool: &PgPool, schema: &'static Schema) -> Result<PgTx, StoreError> {
    let connection = pool
        .acquire()
        .await
        .map_err(failed_in("unit_of_work::begin_single_read"))?;
    Ok(PgTx {
        tx: Conn::Single(connection),
        schema,
        aborted: false,
        outbox: OutboxMode::Poll,
    })
}

/// Vacuums the schema's outbox, whose rows are all removed again soon after they were written.
async fn upkeep(pool: &PgPool, schema: &'static Schema) -> Result<(), StoreError> {
    // The simple protocol: VACUUM cannot run inside the implicit transaction of a prepared one.
    sqlx::raw_sql(schema.sql.vacuum)
        .execute(pool)
        .await
        .map_err(|e| classify("unit_of_work::upkeep", e))?;
    Ok(())
}

macro_rules! store {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            pool: PgPool,
            outbox: OutboxMode,
        }

        impl $name {
            #[must_use]
            pub const fn new(pool: PgPool) -> Self {
                Self {
                    pool,
                    outbox: OutboxMode::Poll,
                }
            }

            /// Stores outbox messages for the given relay mode.
            #[must_use]
            pub const fn with_outbox_mode(mut self, outbox: OutboxMode) -> Self {
                self.outbox = outbox;
                self
            }

            #[must_use]
            pub const fn pool(&self) -> &PgPool {
                &self.pool
            }
        }
    };
}
store!(
    /// The order service's store: its pool, used through the unit-of-work port.
    PgOrderStore
);
store!(
    /// The delivery service's store.
    PgDeliveryStore
);

#[async_trait]
impl UnitOfWork<dyn OrderTransaction> for PgOrderStore {
    async fn begin(&self) -> Result<Box<dyn OrderTransaction>, StoreError> {
        Ok(Box::new(PgOrderTx(
            begin(&self.pool, &ORDERS, self.outbox).await?,
        )))
    }
    async fn begin_read_only(&self) -> Result<Box<dyn OrderTransaction>, StoreError> {
        Ok(Box::new(PgOrderTx(
            begin_read_only(&self.pool, &ORDERS).await?,
        )))
    }
    async fn begin_single_read(&self) -> Result<Box<dyn OrderTransaction>, StoreError> {
        Ok(Box::new(PgOrderTx(
            begin_single_read(&self.pool, &ORDERS).await?,
        )))
    }
    async fn upkeep(&self) -> Result<(), StoreError> {
        upkeep(&self.pool, &ORDERS).await
    }
}

#[async_trait]
impl UnitOfWork<dyn Transaction> for PgOrderStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(PgOrderTx(
            begin(&self.pool, &ORDERS, self.outbox).await?,
        )))
    }
    async fn upkeep(&self) -> Result<(), StoreError> {
        upkeep(&self.pool, &ORDERS).await
    }
}

#[async_trait]
impl UnitOfWork<dyn DeliveryTransaction> for PgDeliveryStore {
    async fn begin(&self) -> Result<Box<dyn DeliveryTransaction>, StoreError> {
        Ok(Box::new(PgDeliveryTx(
            begin(&self.pool, &DELIVERY, self.outbox).await?,
        )))
    }
    async fn begin_read_only(&self) -> Result<Box<dyn DeliveryTransaction>, StoreError> {
        Ok(Box::new(PgDeliveryTx(
            begin_read_only(&self.pool, &DELIVERY).await?,
        )))
    }
    async fn upkeep(&self) -> Result<(), StoreError> {
        upkeep(&self.pool, &DELIVERY).await
    }
}

#[async_trait]
impl UnitOfWork<dyn Transaction> for PgDeliveryStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(PgDeliveryTx(
            begin(&self.pool, &DELIVERY, self.outbox).await?,
        )))
    }
    async fn upkeep(&self) -> Result<(), StoreError> {
        upkeep(&self.pool, &DELIVERY).await
    }
}

macro_rules! transaction {
    ($tx:ty) => {
        #[async_trait]
        impl Transaction for $tx {
            fn outbox(&mut self) -> &mut dyn Outbox {
                &mut self.0
            }
            fn inbox(&mut self) -> &mut dyn Inbox {
                &mut self.0
            }
            fn dead_letters(&mut self) -> &mut dyn DeadLetters {
                &mut self.0
            }
            async fn commit(self: Box<Self>) -> Result<(), StoreError> {
                self.0.commit().await
            }
        }
    };
}
transaction!(PgOrderTx);
transaction!(PgDeliveryTx);

impl DeliveryTransaction for PgDeliveryTx {
    fn deliveries(&mut self) -> &mut dyn DeliveryRepository {
        self
    }
}

/// An optimistic update touched its row, or the version had moved on (or the row is gone).
pub(crate) fn updated_one(done: &sqlx::postgres::PgQueryResult) -> Result<(), StoreError> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

/// A version as the `bigint` column stores it.
pub(crate) fn version(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Unexpected(format!("version {v} out of range").into()))
}

pub(crate) fn count(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(what, n))
}
