//! Orders on `orders.orders`, with optimistic concurrency on their version.

use async_trait::async_trait;
use ordership_domain::ports::{OrderQuery, OrderRepository, StockTake, StoreError};
use ordership_domain::waiting_room::RoomId;
use ordership_domain::{
    AdmissionRef, CancellationReason, CustomerId, DeliveryId, FulfilmentSaga, Order, OrderId,
    OrderLine, OrderSnapshot, OrderStatus, parse_order_line,
};
use serde::Deserialize;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::error::{corrupt, failed_in};
use crate::sagas::joined_saga_columns;
use crate::unit_of_work::{PgOrderTx, count, updated_one, version};

/// The columns an order is read from, qualified by `$q` (`o.`, or `""`).
macro_rules! order_columns {
    ($q:literal) => {
        concat!(
            $q,
            "id, ",
            $q,
            "customer_id, ",
            $q,
            "lines, ",
            $q,
            "ship_recipient, ",
            $q,
            "ship_line1, ",
            $q,
            "ship_city, ",
            $q,
            "ship_postal_code, ",
            $q,
            "ship_country, ",
            $q,
            "status, ",
            $q,
            "delivery_id, ",
            $q,
            "cancellation_kind, ",
            $q,
            "cancellation_detail, ",
            $q,
            "admission_room, ",
            $q,
            "admission_id, ",
            $q,
            "admission_units, ",
            $q,
            "version, ",
            $q,
            "created_at, ",
            $q,
            "updated_at"
        )
    };
}
pub(crate) use order_columns;

macro_rules! select_orders {
    ($($rest:literal),*) => {
        concat!("SELECT ", order_columns!(""), " FROM orders.orders ", $($rest),*)
    };
}

const GET_ORDER: &str = select_orders!("WHERE id = $1");
/// The order and its saga in one statement, so one snapshot (the saga's columns as
/// [`crate::sagas::JOINED`] names them).
const GET_ORDER_WITH_SAGA: &str = concat!(
    "SELECT ",
    order_columns!("o."),
    ", ",
    joined_saga_columns!(),
    " FROM orders.orders o LEFT JOIN orders.sagas s ON s.order_id = o.id WHERE o.id = $1"
);
/// A page of orders: `$3` and `$4` filter by customer and status when not null.
const LIST_ORDERS: &str = select_orders!(
    "WHERE id > $1 AND ($3::text IS NULL OR customer_id = $3) AND ($4::text IS NULL OR status = $4) ",
    "ORDER BY id LIMIT $2"
);
const INSERT_ORDER: &str = "INSERT INTO orders.orders (id, customer_id, lines, total_amount, currency, ship_recipient, \
     ship_line1, ship_city, ship_postal_code, ship_country, status, delivery_id, cancellation_kind, \
     cancellation_detail, version, created_at, updated_at, admission_room, admission_id, \
     admission_units) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
     $20)";
/// Takes `$2` units of room `$1`'s stock, if that many are left: the row lock serialises takes,
/// and a take that would pass the total updates nothing. `left` (NULL: the room counts no
/// stock) tells "sold out" from "uncounted"; it is as of the statement's start, so a take that
/// waited for another may be told of units that other one took.
const TAKE_STOCK: &str = "WITH taken AS (UPDATE orders.room_stock SET sold = sold + $2 \
     WHERE room = $1 AND total IS NOT NULL AND sold + $2 <= total RETURNING 1) \
     SELECT EXISTS (SELECT 1 FROM taken) AS taken, \
     (SELECT total - sold FROM orders.room_stock WHERE room = $1 AND total IS NOT NULL) AS left";
/// Never below zero: a room deleted and made again under the same name starts a new count, and
/// the orders of the old one give back nothing to it.
const GIVE_BACK_STOCK: &str =
    "UPDATE orders.room_stock SET sold = greatest(sold - $2, 0) WHERE room = $1";
const UPDATE_ORDER: &str = "UPDATE orders.orders SET status = $2, delivery_id = $3, cancellation_kind = $4, \
     cancellation_detail = $5, version = $6, updated_at = $7 WHERE id = $1 AND version = $8";

/// An order line as stored in `orders.lines` (jsonb); validated again when read.
#[derive(Debug, Deserialize)]
struct LineRow {
    sku: String,
    quantity: i64,
    unit_price: MoneyRow,
}

#[derive(Debug, Deserialize)]
struct MoneyRow {
    amount: i64,
    currency: String,
}

pub(crate) fn order_from_row(row: &PgRow) -> Result<Order, StoreError> {
    let get_str = |c: &str| {
        row.try_get::<String, _>(c)
            .map_err(failed_in("orders::order_from_row"))
    };
    let lines: serde_json::Value = row
        .try_get("lines")
        .map_err(failed_in("orders::order_from_row"))?;
    let lines: Vec<LineRow> =
        serde_json::from_value(lines).map_err(|e| corrupt("order lines", e))?;
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            parse_order_line(
                i,
                &l.sku,
                l.quantity,
                l.unit_price.amount,
                &l.unit_price.currency,
            )
        })
        .collect::<Result<Vec<OrderLine>, _>>()
        .map_err(|e| corrupt("order line", e))?;
    let address = crate::address_from_row(row)?;
    let status = OrderStatus::parse(&get_str("status")?).map_err(|e| corrupt("order status", e))?;
    let kind: Option<String> = row
        .try_get("cancellation_kind")
        .map_err(failed_in("orders::order_from_row"))?;
    let detail: Option<String> = row
        .try_get("cancellation_detail")
        .map_err(failed_in("orders::order_from_row"))?;
    let cancellation_reason = match kind {
        Some(kind) => Some(
            CancellationReason::from_parts(&kind, detail.as_deref())
                .ok_or_else(|| corrupt("cancellation reason", &kind))?,
        ),
        None => None,
    };
    let version: i64 = row
        .try_get("version")
        .map_err(failed_in("orders::order_from_row"))?;
    let admission_room: Option<String> = row
        .try_get("admission_room")
        .map_err(failed_in("orders::order_from_row"))?;
    let admission_id: Option<String> = row
        .try_get("admission_id")
        .map_err(failed_in("orders::order_from_row"))?;
    let admission = match (admission_room, admission_id) {
        (Some(room), Some(id)) => Some(AdmissionRef {
            room: RoomId::parse(&room).map_err(|e| corrupt("admission room", e))?,
            id,
            units: u32::try_from(
                row.try_get::<i32, _>("admission_units")
                    .map_err(failed_in("orders::order_from_row"))?,
            )
            .map_err(|e| corrupt("admission units", e))?,
        }),
        _ => None,
    };
    Order::restore(OrderSnapshot {
        id: OrderId::from_uuid(
            row.try_get("id")
                .map_err(failed_in("orders::order_from_row"))?,
        ),
        customer_id: CustomerId::parse(&get_str("customer_id")?)
            .map_err(|e| corrupt("customer id", e))?,
        lines,
        shipping_address: address,
        status,
        delivery_id: row
            .try_get::<Option<Uuid>, _>("delivery_id")
            .map_err(failed_in("orders::order_from_row"))?
            .map(DeliveryId::from_uuid),
        cancellation_reason,
        admission,
        version: count(version, "order version")?,
        created_at: row
            .try_get("created_at")
            .map_err(failed_in("orders::order_from_row"))?,
        updated_at: row
            .try_get("updated_at")
            .map_err(failed_in("orders::order_from_row"))?,
    })
    .map_err(|e| corrupt("order", e))
}

/// The order `id` and its saga from `sql`, a query of the order's columns and
/// [`joined_saga_columns!`] bound to the order id.
pub(crate) async fn order_with_saga(
    tx: &mut PgOrderTx,
    sql: &'static str,
    id: OrderId,
    operation: &'static str,
) -> Result<Option<(Order, Option<FulfilmentSaga>)>, StoreError> {
    let row = sqlx::query(sql)
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx.0.tx)
        .await
        .map_err(|e| tx.0.failed(operation, e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let saga = crate::sagas::JOINED.saga_from(&row)?;
    Ok(Some((order_from_row(&row)?, saga)))
}

#[async_trait]
impl OrderRepository for PgOrderTx {
    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(GET_ORDER)
            .bind(id.as_uuid())
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("orders::get", e))?;
        row.as_ref().map(order_from_row).transpose()
    }

    async fn get_with_saga(
        &mut self,
        id: OrderId,
    ) -> Result<Option<(Order, Option<FulfilmentSaga>)>, StoreError> {
        order_with_saga(self, GET_ORDER_WITH_SAGA, id, "orders::get_with_saga").await
    }

    async fn insert(&mut self, order: &Order) -> Result<(), StoreError> {
        let lines =
            serde_json::to_value(order.lines()).map_err(|e| StoreError::Unexpected(Box::new(e)))?;
        let a = order.shipping_address();
        let reason = order.cancellation_reason();
        sqlx::query(INSERT_ORDER)
            .bind(order.id().as_uuid())
            .bind(order.customer_id().as_str())
            .bind(lines)
            .bind(order.total().amount())
            .bind(order.total().currency().as_str())
            .bind(a.recipient())
            .bind(a.line1())
            .bind(a.city())
            .bind(a.postal_code())
            .bind(a.country().as_str())
            .bind(order.status().as_str())
            .bind(order.delivery_id().map(|d| *d.as_uuid()))
            .bind(reason.map(CancellationReason::kind))
            .bind(reason.and_then(CancellationReason::detail))
            .bind(version(order.version())?)
            .bind(order.created_at())
            .bind(order.updated_at())
            .bind(order.admission().map(|a| a.room.as_str()))
            .bind(order.admission().map(|a| a.id.as_str()))
            .bind(units(order.admission().map_or(0, |a| a.units)))
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("orders::insert", e))?;
        Ok(())
    }

    async fn update(&mut self, order: &Order, expected_version: u64) -> Result<(), StoreError> {
        let reason = order.cancellation_reason();
        let done = sqlx::query(UPDATE_ORDER)
            .bind(order.id().as_uuid())
            .bind(order.status().as_str())
            .bind(order.delivery_id().map(|d| *d.as_uuid()))
            .bind(reason.map(CancellationReason::kind))
            .bind(reason.and_then(CancellationReason::detail))
            .bind(version(order.version())?)
            .bind(order.updated_at())
            .bind(version(expected_version)?)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("orders::update", e))?;
        updated_one(&done)
    }

    async fn list(&mut self, query: &OrderQuery) -> Result<Vec<Order>, StoreError> {
        let after = query.after.map_or(Uuid::nil(), |id| *id.as_uuid());
        let limit = i64::from(query.limit);
        let rows = sqlx::query(LIST_ORDERS)
            .bind(after)
            .bind(limit)
            .bind(query.customer.as_ref().map(CustomerId::as_str))
            .bind(query.status.map(OrderStatus::as_str))
            .fetch_all(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("orders::list", e))?;
        rows.iter().map(order_from_row).collect()
    }

    async fn ordered_in_room(
        &mut self,
        room: &RoomId,
        customer: &CustomerId,
    ) -> Result<bool, StoreError> {
        // The unique index (admission_room, customer_id) answers this.
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM orders.orders \
             WHERE admission_room = $1 AND customer_id = $2)",
        )
        .bind(room.as_str())
        .bind(customer.as_str())
        .fetch_one(&mut *self.0.tx)
        .await
        .map_err(|e| self.0.failed("orders::ordered_in_room", e))
    }

    async fn take_stock(&mut self, room: &RoomId, units: u32) -> Result<StockTake, StoreError> {
        let row = sqlx::query(TAKE_STOCK)
            .bind(room.as_str())
            .bind(self::units(units))
            .fetch_one(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("orders::take_stock", e))?;
        let taken: bool = row
            .try_get("taken")
            .map_err(failed_in("orders::take_stock"))?;
        let left: Option<i32> = row
            .try_get("left")
            .map_err(failed_in("orders::take_stock"))?;
        Ok(match (taken, left) {
            (true, _) => StockTake::Taken,
            (false, Some(left)) => StockTake::SoldOut {
                left: u32::try_from(left).unwrap_or(0),
            },
            (false, None) => StockTake::Uncounted,
        })
    }

    async fn give_back_stock(&mut self, room: &RoomId, units: u32) -> Result<(), StoreError> {
        sqlx::query(GIVE_BACK_STOCK)
            .bind(room.as_str())
            .bind(self::units(units))
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("orders::give_back_stock", e))?;
        Ok(())
    }
}

/// Units as the `integer` columns hold them (a room's stock is at most 100,000,000).
fn units(units: u32) -> i32 {
    i32::try_from(units).unwrap_or(i32::MAX)
}
