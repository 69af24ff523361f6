//! PostgreSQL, as the flags describe it: the pools of the services a process runs, their schemas
//! migrated, and each outbox's change feed in CDC relay mode.

use std::sync::Arc;

use anyhow::Context as _;
use ordership_domain::ports::OutboxFeed;
use ordership_postgres::{
    DELIVERY, ORDERS, OutboxMode, PgConfig, PgDeliveryStore, PgOrderChanges, PgOrderStore,
    PgOutboxFeed, PgOutboxSignal, PgPool, PgRelayLeases, PgWaitingRoomStore, Schema,
};

use super::{Role, Side, Stores};
use crate::cli::{CommonArgs, RelayMode};

/// The pool settings the flags give, for the database at `url`.
fn config(args: &CommonArgs, url: &str) -> PgConfig {
    PgConfig {
        max_connections: args.db_max_connections,
        statement_timeout: args.db_statement_timeout,
        ..PgConfig::new(url)
    }
}

/// The database `command` needs: --database-url, or an error that says so.
///
/// # Errors
/// No database URL, or one that is not PostgreSQL's.
pub fn connect(args: &CommonArgs, command: &str) -> anyhow::Result<PgPool> {
    let url = args
        .database_url
        .as_deref()
        .with_context(|| format!("`{command}` needs --database-url (or DATABASE_URL)"))?;
    Ok(ordership_postgres::connect(&config(args, url))?)
}

/// How the services write their outboxes: kept for the polling relay, or through the log only.
#[must_use]
pub fn outbox_mode(args: &CommonArgs) -> OutboxMode {
    match args.relay_mode {
        RelayMode::Poll => OutboxMode::Poll,
        RelayMode::Cdc => OutboxMode::Cdc,
    }
}

/// Opens the pools of the role's services and migrates their schemas (idempotent; safe when
/// several instances start at once).
pub(super) async fn stores(args: &CommonArgs, url: &str, role: Role) -> anyhow::Result<Stores> {
    let config = config(args, url);
    let mode = outbox_mode(args);
    let mut stores = Stores::none();
    if role.runs_orders() {
        let pool = ordership_postgres::connect(&config)?;
        ORDERS
            .migrate(&pool)
            .await
            .context("migrating schema orders")?;
        expect_shards(args, &pool, &ORDERS).await?;
        stores.waiting_rooms = Some(Arc::new(PgWaitingRoomStore::new(pool.clone())));
        stores.order_changes = Some(Arc::new(PgOrderChanges::new(pool.clone())));
        let store = PgOrderStore::new(pool.clone()).with_outbox_mode(mode);
        stores.orders = Some(Side {
            store: Arc::new(store.clone()),
            transactions: Arc::new(store),
            outbox: Arc::new(PgOutboxSignal::new(pool.clone(), &ORDERS)),
            leases: Arc::new(PgRelayLeases::new(pool.clone(), &ORDERS)),
            feed: cdc_feed(args, pool, &ORDERS).await?,
        });
    }
    if role.runs_deliveries() {
        let pool = ordership_postgres::connect(&config)?;
        DELIVERY
            .migrate(&pool)
            .await
            .context("migrating schema delivery")?;
        expect_shards(args, &pool, &DELIVERY).await?;
        let store = PgDeliveryStore::new(pool.clone()).with_outbox_mode(mode);
        stores.deliveries = Some(Side {
            store: Arc::new(store.clone()),
            transactions: Arc::new(store),
            outbox: Arc::new(PgOutboxSignal::new(pool.clone(), &DELIVERY)),
            leases: Arc::new(PgRelayLeases::new(pool.clone(), &DELIVERY)),
            feed: cdc_feed(args, pool, &DELIVERY).await?,
        });
    }
    Ok(stores)
}

/// Refuses to start when --relay-shards names another shard count than the schema's outbox has.
async fn expect_shards(args: &CommonArgs, pool: &PgPool, schema: &Schema) -> anyhow::Result<()> {
    let Some(expected) = args.relay_shards else {
        return Ok(());
    };
    let shards = schema
        .relay_shards(pool)
        .await
        .with_context(|| format!("reading the outbox shards of schema {}", schema.name))?;
    anyhow::ensure!(
        shards == expected,
        "--relay-shards is {expected}, but the outbox of schema {} has {shards} shards: give the \
         count the database has, or change it first (`ordership outbox reshard --shards {expected}`)",
        schema.name
    );
    Ok(())
}

/// The schema's outbox feed in CDC relay mode.
async fn cdc_feed(
    args: &CommonArgs,
    pool: PgPool,
    schema: &'static Schema,
) -> anyhow::Result<Option<Arc<dyn OutboxFeed>>> {
    if args.relay_mode != RelayMode::Cdc {
        return Ok(None);
    }
    let feed = PgOutboxFeed::open(pool, schema)
        .await
        .with_context(|| {
            format!(
                "opening the CDC feed of schema {} (wal_level=logical?)",
                schema.name
            )
        })?
        .connecting_as(args.database_url.as_deref().unwrap_or_default());
    tracing::info!(
        slot = feed.slot(),
        "CDC relay: streaming the outbox from the write-ahead log"
    );
    Ok(Some(Arc::new(feed)))
}
