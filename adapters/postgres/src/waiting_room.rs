//! Waiting rooms' configuration on `orders.waiting_rooms`.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{StoreError, WaitingRoomStore};
use ordership_domain::waiting_room::{Rate, RoomId, RoomState, Stock, WaitingRoom, millis};
use ordership_domain::{Currency, Money, Sku};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};

use crate::error::{corrupt, failed_in};

macro_rules! select_rooms {
    ($rest:literal) => {
        concat!(
            "SELECT r.id, r.skus, r.admissions, r.interval_ms, r.admission_validity_ms, ",
            "r.heartbeat_timeout_ms, r.state, r.opens_at, r.closes_at, r.unit_price_amount, ",
            "r.unit_price_currency, r.max_unordered, s.total AS stock_total, ",
            "s.sold AS stock_sold ",
            "FROM orders.waiting_rooms r LEFT JOIN orders.room_stock s ON s.room = r.id ",
            $rest
        )
    };
}

const GET: &str = select_rooms!("WHERE r.id = $1");
const ALL: &str = select_rooms!("ORDER BY r.id");
const PUT: &str = "INSERT INTO orders.waiting_rooms (id, skus, admissions, interval_ms, \
    admission_validity_ms, heartbeat_timeout_ms, state, opens_at, closes_at, unit_price_amount, \
    unit_price_currency, max_unordered, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now()) \
    ON CONFLICT (id) DO UPDATE SET skus = $2, admissions = $3, interval_ms = $4, \
    admission_validity_ms = $5, heartbeat_timeout_ms = $6, state = $7, opens_at = $8, \
    closes_at = $9, unit_price_amount = $10, unit_price_currency = $11, max_unordered = $12, \
    updated_at = now()";
/// Sets the units on sale, unless fewer than are sold (no row then).
const PUT_STOCK: &str = "INSERT INTO orders.room_stock (room, total) VALUES ($1, $2) \
    ON CONFLICT (room) DO UPDATE SET total = $2 WHERE orders.room_stock.sold <= $2 RETURNING sold";
/// Stops counting; the units orders hold stay counted until they are given back.
const STOP_COUNTING: &str = "UPDATE orders.room_stock SET total = NULL WHERE room = $1";

/// Waiting rooms in the order service's schema.
#[derive(Debug, Clone)]
pub struct PgWaitingRoomStore {
    pool: PgPool,
}

impl PgWaitingRoomStore {
    #[must_use]
    pub const fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A column of a room's row.
fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(name)
        .map_err(failed_in("waiting_room::room_from_row"))
}

/// A room's stock as `orders.room_stock` counts it.
fn counted(total: i32, sold: i32) -> Result<Stock, StoreError> {
    let units = |n: i32| u32::try_from(n).map_err(|e| corrupt("room stock", e));
    Stock::counted(units(total)?, units(sold)?).map_err(|e| corrupt("room stock", e))
}

fn ms(row: &PgRow, column: &str) -> Result<Duration, StoreError> {
    let value: i64 = row.try_get(column).map_err(failed_in("waiting_room::ms"))?;
    u64::try_from(value)
        .map(Duration::from_millis)
        .map_err(|e| corrupt(column, e))
}

fn room_from_row(row: &PgRow) -> Result<WaitingRoom, StoreError> {
    let id: String = column(row, "id")?;
    let skus: Vec<String> = column(row, "skus")?;
    let skus = skus
        .iter()
        .map(|s| Sku::parse(s).map_err(|e| corrupt("room sku", e)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let admissions: i32 = column(row, "admissions")?;
    let admissions = u32::try_from(admissions).map_err(|e| corrupt("room admissions", e))?;
    let rate =
        Rate::new(admissions, ms(row, "interval_ms")?).map_err(|e| corrupt("room rate", e))?;
    let state: String = column(row, "state")?;
    let opens_at: Option<DateTime<Utc>> = column(row, "opens_at")?;
    let closes_at: Option<DateTime<Utc>> = column(row, "closes_at")?;
    let amount: Option<i64> = column(row, "unit_price_amount")?;
    let currency: Option<String> = column(row, "unit_price_currency")?;
    let unit_price = match (amount, currency) {
        (Some(amount), Some(currency)) => Some(
            Currency::parse(&currency)
                .and_then(|currency| Money::new(amount, currency))
                .map_err(|e| corrupt("room unit price", e))?,
        ),
        _ => None,
    };
    let max_unordered: Option<i32> = column(row, "max_unordered")?;
    let max_unordered = max_unordered
        .map(u32::try_from)
        .transpose()
        .map_err(|e| corrupt("room max_unordered", e))?;
    let stock = match (column(row, "stock_total")?, column(row, "stock_sold")?) {
        (Some(total), Some(sold)) => Some(counted(total, sold)?),
        _ => None,
    };
    WaitingRoom::new(
        RoomId::parse(&id).map_err(|e| corrupt("room id", e))?,
        skus,
        rate,
        ms(row, "admission_validity_ms")?,
        ms(row, "heartbeat_timeout_ms")?,
        RoomState::parse(&state).map_err(|e| corrupt("room state", e))?,
        opens_at,
        closes_at,
    )
    .map_err(|e| corrupt("room", e))?
    .with_max_unordered(max_unordered)
    .map(|room| room.with_unit_price(unit_price).with_stock(stock))
    .map_err(|e| corrupt("room", e))
}

fn signed(d: Duration) -> i64 {
    i64::try_from(millis(d)).unwrap_or(i64::MAX)
}

#[async_trait]
impl WaitingRoomStore for PgWaitingRoomStore {
    async fn put(&self, room: &WaitingRoom) -> Result<(), StoreError> {
        let skus: Vec<&str> = room.skus().iter().map(Sku::as_str).collect();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(failed_in("waiting_room::put"))?;
        sqlx::query(PUT)
            .bind(room.id().as_str())
            .bind(&skus)
            .bind(i32::try_from(room.rate().admissions()).unwrap_or(i32::MAX))
            .bind(signed(room.rate().interval()))
            .bind(signed(room.admission_validity()))
            .bind(signed(room.heartbeat_timeout()))
            .bind(room.state().as_str())
            .bind(room.opens_at())
            .bind(room.closes_at())
            .bind(room.unit_price().map(|p| p.amount()))
            .bind(room.unit_price().map(|p| p.currency().as_str().to_owned()))
            .bind(
                room.max_unordered()
                    .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            )
            .execute(&mut *tx)
            .await
            .map_err(failed_in("waiting_room::put"))?;
        if let Some(stock) = room.stock() {
            let set = sqlx::query(PUT_STOCK)
                .bind(room.id().as_str())
                .bind(i32::try_from(stock.total()).unwrap_or(i32::MAX))
                .fetch_optional(&mut *tx)
                .await
                .map_err(failed_in("waiting_room::put"))?;
            if set.is_none() {
                // Dropping the transaction rolls the room back too.
                return Err(StoreError::Conflict);
            }
        } else {
            sqlx::query(STOP_COUNTING)
                .bind(room.id().as_str())
                .execute(&mut *tx)
                .await
                .map_err(failed_in("waiting_room::put"))?;
        }
        tx.commit().await.map_err(failed_in("waiting_room::put"))
    }

    async fn get(&self, id: &RoomId) -> Result<Option<WaitingRoom>, StoreError> {
        sqlx::query(GET)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(failed_in("waiting_room::get"))?
            .as_ref()
            .map(room_from_row)
            .transpose()
    }

    async fn delete(&self, id: &RoomId) -> Result<bool, StoreError> {
        // The stock goes with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM orders.waiting_rooms WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(failed_in("waiting_room::delete"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn all(&self) -> Result<Vec<WaitingRoom>, StoreError> {
        let rows = sqlx::query(ALL)
            .fetch_all(&self.pool)
            .await
            .map_err(failed_in("waiting_room::all"))?;
        rows.iter().map(room_from_row).collect()
    }
}
