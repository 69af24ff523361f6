//! # ordership-postgres
//!
//! The PostgreSQL adapter (sqlx): every storage port of `ordership-domain` on one
//! `sqlx::Transaction` per unit of work. Each service owns a schema (`orders`, `delivery`) with its
//! own outbox, inbox and migrations table. Repositories use optimistic concurrency (a version
//! column), saga steps lock their row (`FOR UPDATE`), the sweeper and the relay claim with
//! `FOR UPDATE SKIP LOCKED`, the inbox and idempotency keys insert-or-ignore, and an outbox trigger
//! `NOTIFY`s the relay on commit. sqlx errors are classified once, by SQLSTATE, into the ports'
//! errors: only this crate knows SQL. One module per port, named as in the memory adapter
//! (`unit_of_work`, `orders`, `sagas`, `deliveries`, `outbox`, `inbox`, `idempotency`), plus the
//! outbox change feed (`feed`, with its `pgoutput` decoder), `notify` and the `schema`s.

mod dead_letters;
mod deliveries;
mod error;
mod feed;
mod history;
mod idempotency;
mod inbox;
mod notify;
mod orders;
mod outbox;
mod relay_shards;
mod relay_sql;
mod sagas;
pub mod schema;
mod steps;
#[cfg(feature = "testing")]
pub mod testing;
mod unit_of_work;
mod waiting_room;

use std::str::FromStr;
use std::time::Duration;

use ordership_domain::ShippingAddress;
use ordership_domain::ports::StoreError;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};

pub use feed::PgOutboxFeed;
pub use notify::{ORDER_CHANGED_CHANNEL, PgOrderChanges, PgOutboxSignal};
pub use relay_shards::{LeaseRow, PgRelayLeases};
pub use schema::{DELIVERY, ORDERS, Schema};
pub use sqlx::PgPool;
pub use unit_of_work::{OutboxMode, PgDeliveryStore, PgDeliveryTx, PgOrderStore, PgOrderTx, PgTx};
pub use waiting_room::PgWaitingRoomStore;

/// How to connect.
#[derive(Debug, Clone)]
pub struct PgConfig {
    pub url: String,
    pub max_connections: u32,
    /// Server-side limit per statement; a statement over it fails as `Unavailable`.
    pub statement_timeout: Duration,
    /// How long to wait for a free connection before `Unavailable`.
    pub acquire_timeout: Duration,
}

impl PgConfig {
    #[must_use]
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            max_connections: 16,
            statement_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a pool. Connections are made lazily, so this succeeds while the database is down; the
/// first use then fails with `Unavailable`.
///
/// # Errors
/// An unparsable URL.
pub fn connect(config: &PgConfig) -> Result<PgPool, StoreError> {
    // sqlx parses any URL into PostgreSQL options; a `mysql://` URL would quietly connect to a
    // PostgreSQL server at that address.
    let scheme = config.url.split("://").next().unwrap_or_default();
    if !matches!(scheme, "postgres" | "postgresql") {
        return Err(StoreError::Unexpected(
            format!("a database URL must start with postgres:// or postgresql://, not {scheme}://")
                .into(),
        ));
    }
    let options = PgConnectOptions::from_str(&config.url)
        .map_err(|e| StoreError::Unexpected(format!("invalid database URL: {e}").into()))?
        .application_name("ordership")
        .options([(
            "statement_timeout",
            format!("{}ms", config.statement_timeout.as_millis()),
        )]);
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options))
}

/// A shipping address stored as `ship_*` columns.
pub(crate) fn address_from_row(row: &PgRow) -> Result<ShippingAddress, StoreError> {
    let get = |c: &str| {
        row.try_get::<String, _>(c)
            .map_err(error::failed_in("lib::address_from_row"))
    };
    ShippingAddress::new(
        &get("ship_recipient")?,
        &get("ship_line1")?,
        &get("ship_city")?,
        &get("ship_postal_code")?,
        get("ship_country")?.trim(),
    )
    .map_err(|e| error::corrupt("shipping address", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_postgresql_urls_are_accepted() {
        for url in ["postgres://u@localhost/db", "postgresql://u@localhost/db"] {
            assert!(connect(&PgConfig::new(url)).is_ok(), "{url}");
        }
        for url in ["mysql://u@localhost/db", "sqlite::memory:", "localhost/db"] {
            let Err(e) = connect(&PgConfig::new(url)) else {
                panic!("{url} was accepted");
            };
            assert!(
                e.to_string().contains("unexpected") || format!("{e:?}").contains("postgres://"),
                "{url}: {e:?}"
            );
        }
    }
}
