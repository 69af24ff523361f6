//! The outbox's shards (migration `relay_shards`, ADR 0028): the leases by which relay
//! instances share them, the shard count, and resharding.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use ordership_domain::ports::{RelayLeases, StoreError};
use ordership_domain::relay_shards::{ShardLease, Shards, plan_leases};
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection as _, PgPool, Row};
use tokio::sync::Mutex;

use crate::error::{classify, corrupt, failed_in};
use crate::schema::Schema;

/// One shard and its lease, as stored.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub shard: u32,
    pub owner: Option<String>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// The lease has not expired.
    pub live: bool,
}

/// The rows of the `list` / `leases` statements.
fn lease_rows(rows: &[PgRow], operation: &'static str) -> Result<Vec<LeaseRow>, StoreError> {
    let failed = failed_in(operation);
    rows.iter()
        .map(|row| {
            Ok(LeaseRow {
                shard: shard_number(row.try_get(0).map_err(&failed)?)?,
                owner: row.try_get(1).map_err(&failed)?,
                until: row.try_get(2).map_err(&failed)?,
                live: row.try_get(3).map_err(&failed)?,
            })
        })
        .collect()
}

/// The leases of one schema's outbox shards. Each instance renewing through it is kept
/// "connected" by a session lock on a connection of this object's own (taken again on a new
/// connection if that one is lost), so the others see at once that a process died.
#[derive(Debug)]
pub struct PgRelayLeases {
    pool: PgPool,
    schema: &'static Schema,
    presence: Mutex<Presence>,
}

/// The connection that holds the instances' session locks, and whose it holds.
#[derive(Debug, Default)]
struct Presence {
    /// Taken out of the pool for good (`detach`), so that it does not count against it.
    connection: Option<PgConnection>,
    owners: HashSet<String>,
}

impl PgRelayLeases {
    #[must_use]
    pub fn new(pool: PgPool, schema: &'static Schema) -> Self {
        Self {
            pool,
            schema,
            presence: Mutex::default(),
        }
    }

    /// Makes sure `owner`'s session lock is held on a live connection.
    async fn stay_connected(&self, owner: &str) -> Result<(), StoreError> {
        let failed = failed_in("relay_leases::connected");
        let mut presence = self.presence.lock().await;
        if let Some(connection) = presence.connection.as_mut()
            && connection.ping().await.is_err()
        {
            presence.connection = None;
            presence.owners.clear();
        }
        if presence.connection.is_none() {
            presence.connection = Some(self.pool.acquire().await.map_err(&failed)?.detach());
        }
        if !presence.owners.contains(owner) {
            let Some(connection) = presence.connection.as_mut() else {
                return Ok(());
            };
            sqlx::query(self.schema.relay.connected)
                .bind(owner)
                .execute(&mut *connection)
                .await
                .map_err(&failed)?;
            presence.owners.insert(owner.to_owned());
        }
        Ok(())
    }
}

fn seconds(term: Duration) -> f64 {
    term.as_secs_f64()
}

fn shard_number(value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt("relay shard", value))
}

#[async_trait]
impl RelayLeases for PgRelayLeases {
    async fn renew(&self, owner: &str, term: Duration) -> Result<Shards, StoreError> {
        self.stay_connected(owner).await?;
        let sql = &self.schema.relay;
        let failed = failed_in("relay_leases::renew");
        let mut tx = self.pool.begin().await.map_err(&failed)?;
        let alive: Vec<String> = sqlx::query_scalar(sql.alive)
            .bind(owner)
            .bind(seconds(term))
            .fetch_all(&mut *tx)
            .await
            .map_err(&failed)?;
        let rows = sqlx::query(sql.leases)
            .fetch_all(&mut *tx)
            .await
            .map_err(&failed)?;
        let leases: Vec<ShardLease> = lease_rows(&rows, "relay_leases::renew")?
            .into_iter()
            .map(|l| ShardLease {
                shard: l.shard,
                owner: l.owner,
                live: l.live,
            })
            .collect();
        let plan = plan_leases(&leases, &alive, owner);
        let as_sql = |shards: &[u32]| -> Vec<i32> {
            shards
                .iter()
                .filter_map(|s| i32::try_from(*s).ok())
                .collect()
        };
        sqlx::query(sql.hold)
            .bind(owner)
            .bind(seconds(term))
            .bind(as_sql(&plan.hold))
            .execute(&mut *tx)
            .await
            .map_err(&failed)?;
        if !plan.release.is_empty() {
            sqlx::query(sql.release)
                .bind(owner)
                .bind(as_sql(&plan.release))
                .execute(&mut *tx)
                .await
                .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)?;
        Ok(Shards {
            indexes: plan.hold,
            count: u32::try_from(leases.len()).unwrap_or(u32::MAX),
        })
    }

    async fn release(&self, owner: &str) -> Result<(), StoreError> {
        let sql = &self.schema.relay;
        let failed = failed_in("relay_leases::release");
        {
            let mut presence = self.presence.lock().await;
            if presence.owners.remove(owner)
                && let Some(connection) = presence.connection.as_mut()
            {
                sqlx::query(sql.disconnected)
                    .bind(owner)
                    .execute(&mut *connection)
                    .await
                    .map_err(&failed)?;
            }
        }
        let mut tx = self.pool.begin().await.map_err(&failed)?;
        for statement in [sql.release_all, sql.gone] {
            sqlx::query(statement)
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(&failed)?;
        }
        tx.commit().await.map_err(&failed)
    }
}

impl Schema {
    /// How many shards this schema's outbox has.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`].
    pub async fn relay_shards(&self, pool: &PgPool) -> Result<u32, StoreError> {
        let count: i64 = sqlx::query_scalar(self.relay.count)
            .fetch_one(pool)
            .await
            .map_err(|e| classify("schema::relay_shards", e))?;
        u32::try_from(count).map_err(|_| corrupt("relay shard count", count))
    }

    /// This schema's outbox shards with their leases, for operators.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] / [`StoreError::Unexpected`].
    pub async fn relay_leases(&self, pool: &PgPool) -> Result<Vec<LeaseRow>, StoreError> {
        let rows = sqlx::query(self.relay.list)
            .fetch_all(pool)
            .await
            .map_err(|e| classify("schema::relay_leases", e))?;
        lease_rows(&rows, "schema::relay_leases")
    }

    /// Gives this schema's outbox `shards` shards, online: it waits until no relay is
    /// publishing (each holds a shard's right for one transaction), changes the count, and
    /// relays go on by the new count; waiting messages keep their order.
    ///
    /// # Errors
    /// [`StoreError::Unexpected`] for a count outside 1..=1024; [`StoreError::Unavailable`].
    pub async fn reshard(&self, pool: &PgPool, shards: u32) -> Result<(), StoreError> {
        let shards = i32::try_from(shards).unwrap_or(i32::MAX);
        sqlx::query(self.relay.reshard)
            .bind(shards)
            .execute(pool)
            .await
            .map_err(|e| classify("schema::reshard", e))?;
        Ok(())
    }
}
