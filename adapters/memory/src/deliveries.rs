//! Deliveries in memory: the delivery repository of a [`MemoryTransaction`], at most one per order.

use async_trait::async_trait;
use chrono::NaiveDate;
use ordership_domain::ports::{DeliveryRepository, StoreError};
use ordership_domain::{CountryCode, Delivery, DeliveryId, OrderId};

use crate::unit_of_work::{MemoryTransaction, insert_row, update_row};

#[async_trait]
impl DeliveryRepository for MemoryTransaction {
    async fn get(&mut self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        Ok(self.tables()?.deliveries.get(&id).cloned())
    }

    async fn get_by_order(&mut self, order_id: OrderId) -> Result<Option<Delivery>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .delivery_by_order
            .get(&order_id)
            .and_then(|id| tables.deliveries.get(id))
            .cloned())
    }

    async fn insert(&mut self, delivery: &Delivery) -> Result<(), StoreError> {
        let delivery = delivery.clone();
        self.write(|t| {
            let (id, order_id) = (delivery.id(), delivery.order_id());
            // At most one delivery per order: the unique index of a database.
            if t.delivery_by_order.contains_key(&order_id) {
                return Err(StoreError::Duplicate);
            }
            let undo_row = insert_row(t, |t| &mut t.deliveries, delivery)?;
            t.delivery_by_order.insert(order_id, id);
            Ok(Box::new(move |t| {
                t.delivery_by_order.remove(&order_id);
                undo_row(t);
            }))
        })
    }

    async fn update(
        &mut self,
        delivery: &Delivery,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let delivery = delivery.clone();
        self.write(|t| update_row(t, |t| &mut t.deliveries, delivery, expected_version))
    }

    async fn count_live_on(
        &mut self,
        country: CountryCode,
        day: NaiveDate,
    ) -> Result<u64, StoreError> {
        let count = self
            .tables()?
            .deliveries
            .values()
            .filter(|d| {
                d.status().is_live()
                    && d.address().country() == country
                    && d.created_at().date_naive() == day
            })
            .count();
        Ok(count as u64)
    }
}
