//! The delivery service's repository on `delivery.deliveries`.

use async_trait::async_trait;
use chrono::{Duration, NaiveDate, NaiveTime};
use ordership_domain::ports::{DeliveryRepository, StoreError};
use ordership_domain::{
    CountryCode, Delivery, DeliveryId, DeliverySnapshot, DeliveryStatus, OrderId,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{corrupt, failed_in};
use crate::unit_of_work::{PgDeliveryTx, count, updated_one, version};

macro_rules! select_deliveries {
    ($where:literal) => {
        concat!(
            "SELECT id, order_id, ship_recipient, ship_line1, ship_city, ship_postal_code, ship_country, ",
            "status, eta, version, created_at, updated_at FROM delivery.deliveries ", $where
        )
    };
}

const GET: &str = select_deliveries!("WHERE id = $1");
const GET_BY_ORDER: &str = select_deliveries!("WHERE order_id = $1");
const INSERT: &str = "INSERT INTO delivery.deliveries (id, order_id, ship_recipient, ship_line1, ship_city, \
     ship_postal_code, ship_country, status, eta, version, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const UPDATE: &str = "UPDATE delivery.deliveries SET status = $2, version = $3, updated_at = $4 \
     WHERE id = $1 AND version = $5";
/// Serializes schedulers of one region and day until their transactions end, so two concurrent
/// requests cannot both take the last slot (write skew).
const LOCK_REGION_DAY: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
const COUNT_LIVE: &str = "SELECT count(*) FROM delivery.deliveries \
     WHERE ship_country = $1 AND created_at >= $2 AND created_at < $3 AND status <> 'cancelled'";

fn delivery_from_row(row: &PgRow) -> Result<Delivery, StoreError> {
    let status: String = row
        .try_get("status")
        .map_err(failed_in("deliveries::delivery_from_row"))?;
    let version: i64 = row
        .try_get("version")
        .map_err(failed_in("deliveries::delivery_from_row"))?;
    Ok(Delivery::restore(DeliverySnapshot {
        id: DeliveryId::from_uuid(
            row.try_get("id")
                .map_err(failed_in("deliveries::delivery_from_row"))?,
        ),
        order_id: OrderId::from_uuid(
            row.try_get("order_id")
                .map_err(failed_in("deliveries::delivery_from_row"))?,
        ),
        address: crate::address_from_row(row)?,
        status: DeliveryStatus::parse(&status).map_err(|e| corrupt("delivery status", e))?,
        eta: row
            .try_get("eta")
            .map_err(failed_in("deliveries::delivery_from_row"))?,
        version: count(version, "delivery version")?,
        created_at: row
            .try_get("created_at")
            .map_err(failed_in("deliveries::delivery_from_row"))?,
        updated_at: row
            .try_get("updated_at")
            .map_err(failed_in("deliveries::delivery_from_row"))?,
    }))
}

#[async_trait]
impl DeliveryRepository for PgDeliveryTx {
    async fn get(&mut self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(GET)
            .bind(id.as_uuid())
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("deliveries::get", e))?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn get_by_order(&mut self, order_id: OrderId) -> Result<Option<Delivery>, StoreError> {
        let row = sqlx::query(GET_BY_ORDER)
            .bind(order_id.as_uuid())
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("deliveries::get_by_order", e))?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn insert(&mut self, d: &Delivery) -> Result<(), StoreError> {
        let a = d.address();
        sqlx::query(INSERT)
            .bind(d.id().as_uuid())
            .bind(d.order_id().as_uuid())
            .bind(a.recipient())
            .bind(a.line1())
            .bind(a.city())
            .bind(a.postal_code())
            .bind(a.country().as_str())
            .bind(d.status().as_str())
            .bind(d.eta())
            .bind(version(d.version())?)
            .bind(d.created_at())
            .bind(d.updated_at())
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("deliveries::insert", e))?;
        Ok(())
    }

    async fn update(&mut self, d: &Delivery, expected_version: u64) -> Result<(), StoreError> {
        let done = sqlx::query(UPDATE)
            .bind(d.id().as_uuid())
            .bind(d.status().as_str())
            .bind(version(d.version())?)
            .bind(d.updated_at())
            .bind(version(expected_version)?)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("deliveries::update", e))?;
        updated_one(&done)
    }

    async fn count_live_on(
        &mut self,
        country: CountryCode,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        sqlx::query(LOCK_REGION_DAY)
            .bind(format!("delivery-capacity/{country}/{day}"))
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("deliveries::count_live_on", e))?;
        let start = day.and_time(NaiveTime::MIN).and_utc();
        let n: i64 = sqlx::query(COUNT_LIVE)
            .bind(country.as_str())
            .bind(start)
            .bind(start + Duration::days(1))
            .fetch_one(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("deliveries::count_live_on", e))?
            .try_get(0)
            .map_err(failed_in("deliveries::count_live_on"))?;
        count(n, "delivery count")
    }
}
