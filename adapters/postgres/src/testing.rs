//! Test support: a fresh, migrated database per test on the server of `TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`). A test that cannot reach the server
//! fails; it never skips.

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::{DELIVERY, ORDERS, PgConfig, Schema, connect};

/// The admin URL of the test server.
#[must_use]
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The URL of database `name` on the test server.
#[must_use]
pub fn database_url(name: &str) -> String {
    let server = server_url();
    match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => format!("{server}/{name}"),
    }
}

/// Creates an empty database with a unique name (`ordership_test_…`) and returns its name.
///
/// # Panics
/// When the server cannot be reached: tests that need PostgreSQL fail without it.
pub async fn create_database() -> String {
    let name = format!("ordership_test_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&server_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is required for this test and is not reachable at {} ({e}); \
             start it (scripts/test.sh does) or set TEST_DATABASE_URL",
                server_url()
            )
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    name
}

/// A fresh database with both schemas migrated; returns its URL.
///
/// # Panics
/// When the server cannot be reached or a migration fails.
pub async fn fresh_database_url() -> String {
    let url = database_url(&create_database().await);
    let pool = connect(&PgConfig::new(&url)).unwrap_or_else(|e| panic!("{e}"));
    for schema in [&ORDERS, &DELIVERY] {
        schema
            .migrate(&pool)
            .await
            .unwrap_or_else(|e| panic!("migrating {}: {e:?}", schema.name));
    }
    pool.close().await;
    url
}

/// A fresh database with both schemas migrated, and a pool on it.
///
/// # Panics
/// When the server cannot be reached or a migration fails.
pub async fn fresh_database() -> PgPool {
    connect(&PgConfig::new(&fresh_database_url().await)).unwrap_or_else(|e| panic!("{e}"))
}

/// Drops the logical replication slots on the database at `url` that no session holds: a slot
/// left behind keeps write-ahead log on the server until someone drops it. Returns how many.
///
/// # Panics
/// When the server cannot be reached.
pub async fn drop_replication_slots(url: &str) -> u64 {
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    let mut admin = PgConnection::connect(&server_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", server_url()));
    let dropped: Vec<(String,)> = sqlx::query_as(
        "SELECT slot_name::text FROM pg_replication_slots WHERE database = $1 AND NOT active",
    )
    .bind(&name)
    .fetch_all(&mut admin)
    .await
    .unwrap_or_else(|e| panic!("listing the slots of {name}: {e}"));
    for (slot,) in &dropped {
        sqlx::query("SELECT pg_drop_replication_slot($1)")
            .bind(slot)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("dropping slot {slot}: {e}"));
    }
    dropped.len() as u64
}

/// The logical replication slots on the database at `url`.
///
/// # Panics
/// When the server cannot be reached.
pub async fn replication_slots(url: &str) -> u64 {
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    let mut admin = PgConnection::connect(&server_url())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {}: {e}", server_url()));
    let (n,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_replication_slots WHERE database = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("counting the slots of {name}: {e}"));
    u64::try_from(n).unwrap_or_default()
}

/// An outbox statement whose cost a test measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatement {
    /// The polling relay's claim of a batch of 100 (of an outbox in one shard: every row).
    Claim,
    /// The backlog figures (pending, oldest, parked).
    Stats,
}

/// The shared buffers (found in the cache or read) one run of `statement` on `schema`'s outbox
/// touches, from `EXPLAIN (ANALYZE, BUFFERS)`: what it costs, measured in pages rather than time.
///
/// # Panics
/// When the server refuses the statement or its plan has no buffer counts.
pub async fn outbox_statement_buffers(
    pool: &PgPool,
    schema: &Schema,
    statement: OutboxStatement,
) -> u64 {
    let sql = match statement {
        OutboxStatement::Claim => schema.sql.claim,
        OutboxStatement::Stats => schema.sql.stats,
    };
    let explain = sqlx::AssertSqlSafe(format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}"));
    let query = sqlx::query_scalar::<_, serde_json::Value>(explain);
    let query = match statement {
        OutboxStatement::Claim => query
            .bind(100_i64)
            .bind(Vec::<i64>::new())
            .bind(1_i32)
            .bind(0_i32),
        OutboxStatement::Stats => query,
    };
    let plan = query
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("explaining {sql}: {e}"));
    let top = &plan[0]["Plan"];
    ["Shared Hit Blocks", "Shared Read Blocks"]
        .iter()
        .map(|field| {
            top[field]
                .as_u64()
                .unwrap_or_else(|| panic!("no {field:?} in the plan {plan}"))
        })
        .sum()
}
