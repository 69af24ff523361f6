//! Orders in memory: the order repository of a [`MemoryTransaction`].

use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use ordership_domain::ports::{OrderQuery, OrderRepository, StockTake, StoreError};
use ordership_domain::waiting_room::RoomId;
use ordership_domain::{CustomerId, FulfilmentSaga, Order, OrderId};

use crate::unit_of_work::{MemoryTransaction, insert_row, update_row};

#[async_trait]
impl OrderRepository for MemoryTransaction {
    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.tables()?.orders.get(&id).cloned())
    }

    async fn get_with_saga(
        &mut self,
        id: OrderId,
    ) -> Result<Option<(Order, Option<FulfilmentSaga>)>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .orders
            .get(&id)
            .map(|order| (order.clone(), tables.sagas.get(&id).cloned())))
    }

    async fn insert(&mut self, order: &Order) -> Result<(), StoreError> {
        let order = order.clone();
        self.write(|t| {
            // One order per admission, and one per buyer and room (PostgreSQL's unique indexes).
            if let Some(admission) = order.admission() {
                let taken = t.orders.values().any(|other| {
                    other.admission().is_some_and(|a| {
                        a.id == admission.id
                            || (a.room == admission.room
                                && other.customer_id() == order.customer_id())
                    })
                });
                if taken {
                    return Err(StoreError::Duplicate);
                }
            }
            insert_row(t, |t| &mut t.orders, order)
        })
    }

    async fn update(&mut self, order: &Order, expected_version: u64) -> Result<(), StoreError> {
        let order = order.clone();
        self.write(|t| update_row(t, |t| &mut t.orders, order, expected_version))
    }

    async fn list(&mut self, query: &OrderQuery) -> Result<Vec<Order>, StoreError> {
        use std::ops::Bound;
        let tables = self.tables()?;
        let start = query.after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(tables
            .orders
            .range((start, Bound::Unbounded))
            .map(|(_, order)| order)
            .filter(|order| query.status.is_none_or(|s| order.status() == s))
            .filter(|order| {
                query
                    .customer
                    .as_ref()
                    .is_none_or(|c| order.customer_id() == c)
            })
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn ordered_in_room(
        &mut self,
        room: &RoomId,
        customer: &CustomerId,
    ) -> Result<bool, StoreError> {
        Ok(self.tables()?.orders.values().any(|order| {
            order.customer_id() == customer && order.admission().is_some_and(|a| &a.room == room)
        }))
    }

    async fn take_stock(&mut self, room: &RoomId, units: u32) -> Result<StockTake, StoreError> {
        self.tables()?;
        let rooms = Arc::clone(&self.rooms);
        let mut locked = rooms.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(stock) = locked.stock.get_mut(room) else {
            return Ok(StockTake::Uncounted);
        };
        let Some(total) = stock.total else {
            return Ok(StockTake::Uncounted);
        };
        if stock.sold.saturating_add(units) > total {
            return Ok(StockTake::SoldOut {
                left: total.saturating_sub(stock.sold),
            });
        }
        stock.sold += units;
        drop(locked);
        let room = room.clone();
        self.write(move |_| {
            Ok(Box::new(move |_| {
                let mut locked = rooms.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(stock) = locked.stock.get_mut(&room) {
                    stock.sold -= units;
                }
            }))
        })?;
        Ok(StockTake::Taken)
    }

    async fn give_back_stock(&mut self, room: &RoomId, units: u32) -> Result<(), StoreError> {
        self.tables()?;
        let rooms = Arc::clone(&self.rooms);
        // Never below zero, as in PostgreSQL.
        let given = rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stock
            .get_mut(room)
            .map_or(0, |stock| {
                let given = stock.sold.min(units);
                stock.sold -= given;
                given
            });
        let room = room.clone();
        self.write(move |_| {
            Ok(Box::new(move |_| {
                let mut locked = rooms.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(stock) = locked.stock.get_mut(&room) {
                    stock.sold += given;
                }
            }))
        })
    }
}
