//! The two schemas, their migrations, and their schema-qualified SQL.
//!
//! Every statement is a `&'static str` (assembled with `concat!`), so nothing is ever formatted
//! into SQL at run time; values always travel as bind parameters.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{PgPool, SqlSafeStr};

use crate::error::classify;
use crate::relay_sql::{RelaySql, relay_sql};
use ordership_domain::ports::StoreError;

/// A service's schema: its name, its migrations, and its outbox/inbox statements.
#[derive(Debug)]
pub struct Schema {
    pub name: &'static str,
    /// `LISTEN` channel the outbox trigger notifies.
    pub notify_channel: &'static str,
    migrations_table: &'static str,
    migrations: &'static [(i64, &'static str, &'static str, &'static str)],
    pub(crate) sql: OutboxSql,
    pub(crate) relay: RelaySql,
}

/// Outbox and inbox statements of one schema.
#[derive(Debug)]
pub(crate) struct OutboxSql {
    pub(crate) append: &'static str,
    pub(crate) claim: &'static str,
    pub(crate) claim_in: &'static str,
    pub(crate) mark: &'static str,
    pub(crate) park: &'static str,
    pub(crate) stats: &'static str,
    pub(crate) purge: &'static str,
    pub(crate) parked: &'static str,
    pub(crate) purge_parked: &'static str,
    pub(crate) unpark: &'static str,
    pub(crate) inbox_record: &'static str,
    pub(crate) inbox_purge: &'static str,
    /// The outbox's upkeep (outside any transaction).
    pub(crate) vacuum: &'static str,
    pub(crate) cdc: CdcSql,
    pub(crate) dead_letters: DeadLetterSql,
}

/// The index of dead letters of one schema.
#[derive(Debug)]
pub(crate) struct DeadLetterSql {
    pub(crate) record: &'static str,
    pub(crate) list: &'static str,
    pub(crate) get: &'static str,
    pub(crate) redrive: &'static str,
    pub(crate) purge: &'static str,
}

/// What the CDC relay and the CDC-mode outbox need of one schema.
#[derive(Debug)]
pub(crate) struct CdcSql {
    /// The publication on the outbox table (migration 0003).
    pub(crate) publication: &'static str,
    /// Appends and returns the rows' ids, to delete them in the same transaction.
    pub(crate) append_returning: &'static str,
    pub(crate) delete_appended: &'static str,
    /// A message the broker refused, set aside as a parked row (the feed skips parked rows).
    pub(crate) park: &'static str,
    pub(crate) slot_recorded: &'static str,
    pub(crate) record_slot: &'static str,
}

/// The columns a dead letter is read from, optionally qualified (`d.`).
macro_rules! dead_letter_columns {
    () => {
        dead_letter_columns!("")
    };
    ($q:literal) => {
        concat!(
            $q,
            "id, ",
            $q,
            "consumer, ",
            $q,
            "message_id, ",
            $q,
            "topic, ",
            $q,
            "key, ",
            $q,
            "message_type, ",
            $q,
            "payload, ",
            $q,
            "headers, ",
            $q,
            "created_at, ",
            $q,
            "reason, ",
            $q,
            "attempts, ",
            $q,
            "dead_at, ",
            $q,
            "redriven_at"
        )
    };
}

/// The relay's claim of one schema's outbox, with the shard condition `$shard` on `key_hash % $3`.
macro_rules! claim {
    ($schema:literal, $shard:literal) => {
        concat!(
            "SELECT id, message_id, topic, key, message_type, payload, headers, created_at FROM ",
            $schema,
            ".outbox o WHERE parked_at IS NULL AND key_hash % $3 ",
            $shard,
            " AND id <> ALL($2) ",
            "AND NOT EXISTS (SELECT 1 FROM ",
            $schema,
            ".outbox p WHERE p.key = o.key AND p.parked_at IS NOT NULL) ",
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
        )
    };
}

macro_rules! outbox_sql {
    ($schema:literal) => {
        OutboxSql {
            // One statement for a step's messages, in their order (one array per column: the
            // rows come out of `unnest` in array order, and take their ids in that order).
            append: concat!(
                "INSERT INTO ", $schema, ".outbox (message_id, topic, key, message_type, payload, headers, created_at) ",
                "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::timestamptz[])"
            ),
            // SKIP LOCKED: rows another relay holds are not waited for; rows of transactions not
            // yet committed are invisible and are claimed once they commit (no id high-water mark).
            // $3/$4: the shard count and index (rows read along the primary key); `claim_in`: $4
            // several indexes (an array is taken apart for every row read past: half the speed).
            claim: claim!($schema, "= $4"),
            claim_in: claim!($schema, "= ANY($4)"),
            park: concat!("UPDATE ", $schema, ".outbox SET parked_at = $2, parked_reason = $3 WHERE id = $1"),
            // Published rows move to the retention table in one statement: the outbox keeps only
            // what is waiting, so a claim never reads what was published before it.
            mark: concat!(
                "WITH published AS (DELETE FROM ", $schema, ".outbox WHERE id = ANY($2) AND parked_at IS NULL ",
                "RETURNING id, message_id, topic, key, message_type, payload, headers, created_at) ",
                "INSERT INTO ", $schema, ".outbox_published (id, message_id, topic, key, message_type, payload, headers, ",
                "created_at, published_at) SELECT id, message_id, topic, key, message_type, payload, headers, created_at, $1 ",
                "FROM published"
            ),
            stats: concat!(
                "SELECT count(*) FILTER (WHERE parked_at IS NULL), min(created_at) FILTER (WHERE parked_at IS NULL), ",
                "count(*) FILTER (WHERE parked_at IS NOT NULL) FROM ", $schema, ".outbox"
            ),
            purge: concat!("DELETE FROM ", $schema, ".outbox_published WHERE published_at < $1"),
            parked: concat!(
                "SELECT id, message_id, topic, key, message_type, payload, headers, created_at, parked_reason FROM ",
                $schema, ".outbox WHERE parked_at IS NOT NULL ORDER BY id LIMIT $1"
            ),
            // Returns the rows, so that CDC mode can append them again.
            purge_parked: concat!(
                "DELETE FROM ", $schema, ".outbox WHERE id = ANY($1) AND parked_at IS NOT NULL ",
                "RETURNING id, message_id, topic, key, message_type, payload, headers, created_at"
            ),
            unpark: concat!(
                "UPDATE ", $schema, ".outbox SET parked_at = NULL, parked_reason = NULL ",
                "WHERE id = ANY($1) AND parked_at IS NOT NULL"
            ),
            inbox_record: concat!(
                "INSERT INTO ", $schema, ".inbox (consumer, message_id, received_at) VALUES ($1, $2, $3) ",
                "ON CONFLICT DO NOTHING"
            ),
            inbox_purge: concat!("DELETE FROM ", $schema, ".inbox WHERE received_at < $1"),
            // Index entries of removed rows are dropped too (INDEX_CLEANUP ON: the outbox is small,
            // so it is cheap); TRUNCATE OFF: no exclusive lock that a relay's claim would wait for.
            vacuum: concat!("VACUUM (INDEX_CLEANUP ON, TRUNCATE OFF) ", $schema, ".outbox"),
            dead_letters: DeadLetterSql {
                record: concat!(
                    "INSERT INTO ", $schema, ".dead_letters (message_id, topic, key, message_type, payload, headers, ",
                    "created_at, consumer, reason, attempts, dead_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ",
                    "ON CONFLICT (consumer, message_id) WHERE redriven_at IS NULL DO NOTHING"
                ),
                list: concat!(
                    "SELECT ", dead_letter_columns!(), " FROM ", $schema, ".dead_letters ",
                    "WHERE ($1::text IS NULL OR consumer = $1) AND ($2 OR redriven_at IS NULL) AND id > $3 ",
                    "ORDER BY id LIMIT $4"
                ),
                get: concat!("SELECT ", dead_letter_columns!(), " FROM ", $schema, ".dead_letters WHERE id = $1"),
                // $2: ids (NULL: any), $3/$4: the time range (NULL: any).
                redrive: concat!(
                    "WITH chosen AS (SELECT id FROM ", $schema, ".dead_letters WHERE redriven_at IS NULL ",
                    "AND ($1::text IS NULL OR consumer = $1) AND ($2::bigint[] IS NULL OR id = ANY($2)) ",
                    "AND ($3::timestamptz IS NULL OR dead_at >= $3) AND ($4::timestamptz IS NULL OR dead_at < $4) ",
                    "ORDER BY id FOR UPDATE) ",
                    "UPDATE ", $schema, ".dead_letters d SET redriven_at = $5 FROM chosen WHERE d.id = chosen.id ",
                    "RETURNING ", dead_letter_columns!("d.")
                ),
                purge: concat!(
                    "DELETE FROM ", $schema, ".dead_letters WHERE redriven_at IS NULL ",
                    "AND ($1::text IS NULL OR consumer = $1) AND ($2::bigint[] IS NULL OR id = ANY($2)) ",
                    "AND ($3::timestamptz IS NULL OR dead_at >= $3) AND ($4::timestamptz IS NULL OR dead_at < $4)"
                ),
            },
            cdc: CdcSql {
                publication: concat!("ordership_", $schema, "_outbox"),
                append_returning: concat!(
                    "INSERT INTO ", $schema, ".outbox (message_id, topic, key, message_type, payload, headers, created_at) ",
                    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::timestamptz[]) ",
                    "RETURNING id"
                ),
                delete_appended: concat!("DELETE FROM ", $schema, ".outbox WHERE id = ANY($1)"),
                park: concat!(
                    "INSERT INTO ", $schema, ".outbox (message_id, topic, key, message_type, payload, headers, created_at, ",
                    "parked_at, parked_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (message_id) DO NOTHING"
                ),
                slot_recorded: concat!("SELECT EXISTS (SELECT 1 FROM ", $schema, ".cdc_slot WHERE slot_name = $1)"),
                record_slot: concat!(
                    "INSERT INTO ", $schema, ".cdc_slot (slot_name, created_at) VALUES ($1, now()) ON CONFLICT DO NOTHING"
                ),
            },
        }
    };
}

/// One migration: its version, its description, and its up and down files under `migrations/`.
macro_rules! migration {
    ($version:literal, $description:literal, $file:literal) => {
        (
            $version,
            $description,
            include_str!(concat!("../migrations/", $file, ".up.sql")),
            include_str!(concat!("../migrations/", $file, ".down.sql")),
        )
    };
}

/// The order service's schema.
pub static ORDERS: Schema = Schema {
    name: "orders",
    notify_channel: "ordership_orders_outbox",
    migrations_table: "orders._sqlx_migrations",
    migrations: &[
        migration!(1, "initial", "orders_0001_initial"),
        migration!(2, "parked outbox messages", "orders_0002_parked_outbox"),
        migration!(3, "outbox publication for the CDC relay", "orders_0003_cdc"),
        migration!(4, "orders by customer", "orders_0004_customer_orders"),
        migration!(5, "waiting rooms", "orders_0005_waiting_rooms"),
        migration!(6, "order admissions", "orders_0006_order_admissions"),
        migration!(
            7,
            "published messages leave the outbox",
            "orders_0007_outbox_published"
        ),
        migration!(8, "saga history", "orders_0008_saga_history"),
        migration!(9, "dead letters", "orders_0009_dead_letters"),
        migration!(10, "relay shards", "orders_0010_relay_shards"),
        migration!(11, "room price", "orders_0011_room_price"),
        migration!(12, "room stock", "orders_0012_room_stock"),
        migration!(13, "room holding limit", "orders_0013_room_holding_limit"),
    ],
    sql: outbox_sql!("orders"),
    relay: relay_sql!("orders"),
};

/// The delivery service's schema.
pub static DELIVERY: Schema = Schema {
    name: "delivery",
    notify_channel: "ordership_delivery_outbox",
    migrations_table: "delivery._sqlx_migrations",
    migrations: &[
        migration!(1, "initial", "delivery_0001_initial"),
        migration!(2, "parked outbox messages", "delivery_0002_parked_outbox"),
        migration!(
            3,
            "outbox publication for the CDC relay",
            "delivery_0003_cdc"
        ),
        migration!(
            4,
            "published messages leave the outbox",
            "delivery_0004_outbox_published"
        ),
        migration!(5, "dead letters", "delivery_0005_dead_letters"),
        migration!(6, "relay shards", "delivery_0006_relay_shards"),
    ],
    sql: outbox_sql!("delivery"),
    relay: relay_sql!("delivery"),
};

impl Schema {
    /// The schema's migrator. Its bookkeeping table lives in the schema itself, so each service
    /// migrates only what it owns, even when both share one database.
    #[must_use]
    pub fn migrator(&self) -> Migrator {
        let mut migrations = Vec::new();
        for &(version, description, up, down) in self.migrations {
            for (kind, sql) in [
                (MigrationType::ReversibleUp, up),
                (MigrationType::ReversibleDown, down),
            ] {
                migrations.push(Migration::new(
                    version,
                    Cow::Borrowed(description),
                    kind,
                    sql.into_sql_str(),
                    false,
                ));
            }
        }
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(self.migrations_table);
        migrator.create_schema(self.name);
        migrator
    }

    /// Applies every pending migration. Safe when several instances start at once: sqlx holds an
    /// advisory lock while it migrates.
    ///
    /// # Errors
    /// The database refused a migration, or a migration applied earlier has changed.
    pub async fn migrate(&self, pool: &PgPool) -> Result<(), StoreError> {
        self.migrator().run(pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify("schema::migrate", e),
            other => StoreError::Unexpected(Box::new(other)),
        })
    }

    /// Reverts migrations down to `target` (0: everything).
    ///
    /// # Errors
    /// As for [`Schema::migrate`].
    pub async fn undo(&self, pool: &PgPool, target: i64) -> Result<(), StoreError> {
        self.migrator()
            .undo(pool, target)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => classify("schema::undo", e),
                other => StoreError::Unexpected(Box::new(other)),
            })
    }
}
