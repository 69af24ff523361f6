//! The in-memory store: every table of both services behind one lock.
//!
//! A transaction holds the lock from `begin` to commit or drop, so transactions are serializable
//! (one at a time), like a database with a single writer. Writes go straight into the tables and
//! leave an undo entry; dropping a transaction without committing replays the undo log, so a
//! rolled-back transaction leaves nothing behind — the same guarantee the Postgres adapter gets
//! from its database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use ordership_domain::ports::{
    Claim, DeliveryRepository, DeliveryTransaction, IdempotencyRecord, IdempotencyStore, Inbox,
    OrderQuery, OrderRepository, OrderTransaction, Outbox, OutboxSignal, OutboxStats,
    SagaRepository, StoreError, StoredResponse, Transaction, UnitOfWork,
};
use ordership_domain::{
    CountryCode, Delivery, DeliveryId, FulfilmentSaga, Message, MessageId, Order, OrderId,
    OutboxEntry, SagaState,
};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

#[derive(Debug)]
struct OutboxRow {
    entry: OutboxEntry,
    published_at: Option<DateTime<Utc>>,
    parked: Option<String>,
}

#[derive(Debug, Default)]
struct Tables {
    orders: BTreeMap<OrderId, Order>,
    sagas: BTreeMap<OrderId, FulfilmentSaga>,
    deliveries: BTreeMap<DeliveryId, Delivery>,
    delivery_by_order: HashMap<OrderId, DeliveryId>,
    outbox: BTreeMap<i64, OutboxRow>,
    outbox_ids: HashMap<MessageId, i64>,
    pending: BTreeSet<i64>,
    next_position: i64,
    inbox: HashMap<(String, MessageId), DateTime<Utc>>,
    idempotency: HashMap<(String, String), IdempotencyRecord>,
}

type Undo = Box<dyn FnOnce(&mut Tables) + Send>;

/// An aggregate kept in a table under its id, with an optimistic-concurrency version.
trait Row: Clone + Send + 'static {
    type Key: Copy + Ord + Send + 'static;
    fn key(&self) -> Self::Key;
    fn version(&self) -> u64;
}

/// Which table of [`Tables`] holds rows of type `R`.
type TableOf<R> = fn(&mut Tables) -> &mut BTreeMap<<R as Row>::Key, R>;

impl Row for Order {
    type Key = OrderId;
    fn key(&self) -> OrderId {
        self.id()
    }
    fn version(&self) -> u64 {
        Order::version(self)
    }
}

impl Row for FulfilmentSaga {
    type Key = OrderId;
    fn key(&self) -> OrderId {
        self.order_id()
    }
    fn version(&self) -> u64 {
        FulfilmentSaga::version(self)
    }
}

impl Row for Delivery {
    type Key = DeliveryId;
    fn key(&self) -> DeliveryId {
        self.id()
    }
    fn version(&self) -> u64 {
        Delivery::version(self)
    }
}

/// Inserts a row that must be new: `Duplicate` if its key exists.
fn insert_row<R: Row>(tables: &mut Tables, table: TableOf<R>, row: R) -> Result<Undo, StoreError> {
    let key = row.key();
    let rows = table(tables);
    if rows.contains_key(&key) {
        return Err(StoreError::Duplicate);
    }
    rows.insert(key, row);
    Ok(Box::new(move |t| {
        table(t).remove(&key);
    }))
}

/// Replaces a row whose stored version is still `expected`: `Conflict` otherwise.
fn update_row<R: Row>(
    tables: &mut Tables,
    table: TableOf<R>,
    row: R,
    expected: u64,
) -> Result<Undo, StoreError> {
    let key = row.key();
    let rows = table(tables);
    match rows.get(&key) {
        Some(stored) if stored.version() == expected => {}
        _ => return Err(StoreError::Conflict),
    }
    let previous = rows.insert(key, row);
    Ok(Box::new(move |t| {
        if let Some(previous) = previous {
            table(t).insert(key, previous);
        }
    }))
}

/// An in-memory database for one service (or both, in tests). Cheap to clone: clones share the
/// same tables.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    committed_outbox: Arc<Notify>,
}

impl MemoryStore {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    async fn open(&self) -> MemoryTransaction {
        MemoryTransaction {
            tables: Some(Arc::clone(&self.tables).lock_owned().await),
            undo: Vec::new(),
            wrote_outbox: false,
            committed_outbox: Arc::clone(&self.committed_outbox),
        }
    }

    /// Every message ever appended to the outbox and not purged, in position order, with
    /// whether it was published. For tests.
    pub async fn outbox_messages(&self) -> Vec<(Message, bool)> {
        let tables = self.tables.lock().await;
        tables
            .outbox
            .values()
            .map(|row| (row.entry.message.clone(), row.published_at.is_some()))
            .collect()
    }

    /// Every delivery. For tests and checks.
    pub async fn deliveries(&self) -> Vec<Delivery> {
        self.tables
            .lock()
            .await
            .deliveries
            .values()
            .cloned()
            .collect()
    }

    /// Every order. For tests and checks.
    pub async fn orders(&self) -> Vec<Order> {
        self.tables.lock().await.orders.values().cloned().collect()
    }
}

#[async_trait]
impl UnitOfWork<dyn OrderTransaction> for MemoryStore {
    async fn begin(&self) -> Result<Box<dyn OrderTransaction>, StoreError> {
        Ok(Box::new(self.open().await))
    }
}

#[async_trait]
impl UnitOfWork<dyn DeliveryTransaction> for MemoryStore {
    async fn begin(&self) -> Result<Box<dyn DeliveryTransaction>, StoreError> {
        Ok(Box::new(self.open().await))
    }
}

#[async_trait]
impl UnitOfWork<dyn Transaction> for MemoryStore {
    async fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        Ok(Box::new(self.open().await))
    }
}

#[async_trait]
impl OutboxSignal for MemoryStore {
    async fn committed(&self) {
        self.committed_outbox.notified().await;
    }
}

/// One transaction over a [`MemoryStore`].
pub struct MemoryTransaction {
    /// `None` only after commit.
    tables: Option<OwnedMutexGuard<Tables>>,
    undo: Vec<Undo>,
    wrote_outbox: bool,
    committed_outbox: Arc<Notify>,
}

impl std::fmt::Debug for MemoryTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTransaction")
            .field("pending_undo", &self.undo.len())
            .finish_non_exhaustive()
    }
}

impl Drop for MemoryTransaction {
    fn drop(&mut self) {
        if let Some(tables) = self.tables.as_deref_mut() {
            while let Some(undo) = self.undo.pop() {
                undo(tables);
            }
        }
    }
}

fn closed() -> StoreError {
    StoreError::Unexpected("the transaction is already committed".into())
}

impl MemoryTransaction {
    fn tables(&mut self) -> Result<&mut Tables, StoreError> {
        self.tables.as_deref_mut().ok_or_else(closed)
    }

    /// Runs a write and remembers how to undo it.
    fn write(
        &mut self,
        apply: impl FnOnce(&mut Tables) -> Result<Undo, StoreError>,
    ) -> Result<(), StoreError> {
        let undo = apply(self.tables()?)?;
        self.undo.push(undo);
        Ok(())
    }
}

#[async_trait]
impl Transaction for MemoryTransaction {
    fn outbox(&mut self) -> &mut dyn Outbox {
        self
    }
    fn inbox(&mut self) -> &mut dyn Inbox {
        self
    }
    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.undo.clear();
        self.tables = None;
        if self.wrote_outbox {
            self.committed_outbox.notify_one();
        }
        Ok(())
    }
}

impl OrderTransaction for MemoryTransaction {
    fn orders(&mut self) -> &mut dyn OrderRepository {
        self
    }
    fn sagas(&mut self) -> &mut dyn SagaRepository {
        self
    }
    fn idempotency_keys(&mut self) -> &mut dyn IdempotencyStore {
        self
    }
}

impl DeliveryTransaction for MemoryTransaction {
    fn deliveries(&mut self) -> &mut dyn DeliveryRepository {
        self
    }
}

#[async_trait]
impl OrderRepository for MemoryTransaction {
    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.tables()?.orders.get(&id).cloned())
    }

    async fn insert(&mut self, order: &Order) -> Result<(), StoreError> {
        let order = order.clone();
        self.write(|t| insert_row(t, |t| &mut t.orders, order))
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
            .take(query.limit as usize)
            .cloned()
            .collect())
    }
}

#[async_trait]
impl SagaRepository for MemoryTransaction {
    async fn get(&mut self, order_id: OrderId) -> Result<Option<FulfilmentSaga>, StoreError> {
        Ok(self.tables()?.sagas.get(&order_id).cloned())
    }

    async fn get_many(&mut self, order_ids: &[OrderId]) -> Result<Vec<FulfilmentSaga>, StoreError> {
        let tables = self.tables()?;
        Ok(order_ids
            .iter()
            .filter_map(|id| tables.sagas.get(id).cloned())
            .collect())
    }

    async fn get_for_update(
        &mut self,
        order_id: OrderId,
    ) -> Result<Option<FulfilmentSaga>, StoreError> {
        Ok(self.tables()?.sagas.get(&order_id).cloned())
    }

    async fn insert(&mut self, saga: &FulfilmentSaga) -> Result<(), StoreError> {
        let saga = saga.clone();
        self.write(|t| insert_row(t, |t| &mut t.sagas, saga))
    }

    async fn update(
        &mut self,
        saga: &FulfilmentSaga,
        expected_version: u64,
    ) -> Result<(), StoreError> {
        let saga = saga.clone();
        self.write(|t| update_row(t, |t| &mut t.sagas, saga, expected_version))
    }

    async fn claim_overdue(
        &mut self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<FulfilmentSaga>, StoreError> {
        let mut due: Vec<_> = self
            .tables()?
            .sagas
            .values()
            .filter(|s| s.deadline().is_some_and(|d| d <= now))
            .cloned()
            .collect();
        due.sort_by_key(FulfilmentSaga::deadline);
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn count_by_state(&mut self) -> Result<Vec<(SagaState, u64)>, StoreError> {
        let mut counts: BTreeMap<SagaState, u64> = BTreeMap::new();
        for saga in self.tables()?.sagas.values() {
            *counts.entry(saga.state()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }
}

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

#[async_trait]
impl Outbox for MemoryTransaction {
    async fn append(&mut self, message: &Message) -> Result<(), StoreError> {
        let message = message.clone();
        self.write(|t| {
            if t.outbox_ids.contains_key(&message.id) {
                return Err(StoreError::Duplicate);
            }
            // Like a database sequence, positions are not given back on rollback.
            t.next_position += 1;
            let position = t.next_position;
            let id = message.id;
            let created_at = message.occurred_at;
            t.outbox_ids.insert(id, position);
            t.pending.insert(position);
            t.outbox.insert(
                position,
                OutboxRow {
                    entry: OutboxEntry {
                        position,
                        message,
                        created_at,
                    },
                    published_at: None,
                    parked: None,
                },
            );
            Ok(Box::new(move |t| {
                t.outbox.remove(&position);
                t.pending.remove(&position);
                t.outbox_ids.remove(&id);
            }))
        })?;
        self.wrote_outbox = true;
        Ok(())
    }

    async fn try_lock_relay(&mut self) -> Result<bool, StoreError> {
        // Transactions are serialized already: the relay holding one is alone.
        self.tables().map(|_| true)
    }

    async fn claim_unpublished(&mut self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let tables = self.tables()?;
        let mut held_back = std::collections::HashSet::new();
        let mut batch = Vec::new();
        for row in tables.pending.iter().filter_map(|p| tables.outbox.get(p)) {
            if batch.len() == limit as usize {
                break;
            }
            if row.parked.is_some() {
                held_back.insert(row.entry.message.key.as_str());
            } else if !held_back.contains(row.entry.message.key.as_str()) {
                batch.push(row.entry.clone());
            }
        }
        Ok(batch)
    }

    async fn park(
        &mut self,
        position: i64,
        reason: &str,
        _at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let reason = reason.to_owned();
        self.write(|t| {
            let row = t.outbox.get_mut(&position).ok_or_else(|| {
                StoreError::Unexpected(format!("no outbox message {position}").into())
            })?;
            let previous = row.parked.replace(reason);
            Ok(Box::new(move |t| {
                if let Some(row) = t.outbox.get_mut(&position) {
                    row.parked = previous;
                }
            }))
        })
    }

    async fn mark_published(
        &mut self,
        positions: &[i64],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let positions = positions.to_vec();
        self.write(|t| {
            let mut marked = Vec::with_capacity(positions.len());
            for p in positions {
                if let Some(row) = t.outbox.get_mut(&p)
                    && row.published_at.is_none()
                {
                    row.published_at = Some(at);
                    t.pending.remove(&p);
                    marked.push(p);
                }
            }
            Ok(Box::new(move |t| {
                for p in marked {
                    if let Some(row) = t.outbox.get_mut(&p) {
                        row.published_at = None;
                        t.pending.insert(p);
                    }
                }
            }))
        })
    }

    async fn stats(&mut self) -> Result<OutboxStats, StoreError> {
        let tables = self.tables()?;
        let rows = tables.pending.iter().filter_map(|p| tables.outbox.get(p));
        let (parked, waiting): (Vec<_>, Vec<_>) = rows.partition(|row| row.parked.is_some());
        Ok(OutboxStats {
            pending: waiting.len() as u64,
            oldest_pending_at: waiting.first().map(|row| row.entry.created_at),
            parked: parked.len() as u64,
        })
    }

    async fn purge_published(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut purged = 0;
        self.write(|t| {
            let doomed: Vec<i64> = t
                .outbox
                .iter()
                .filter(|(_, row)| row.published_at.is_some_and(|at| at < before))
                .map(|(p, _)| *p)
                .collect();
            let mut removed = Vec::with_capacity(doomed.len());
            for p in doomed {
                if let Some(row) = t.outbox.remove(&p) {
                    t.outbox_ids.remove(&row.entry.message.id);
                    removed.push(row);
                }
            }
            purged = removed.len() as u64;
            Ok(Box::new(move |t| {
                for row in removed {
                    t.outbox_ids
                        .insert(row.entry.message.id, row.entry.position);
                    t.outbox.insert(row.entry.position, row);
                }
            }))
        })?;
        Ok(purged)
    }
}

#[async_trait]
impl Inbox for MemoryTransaction {
    async fn record(
        &mut self,
        consumer: &str,
        message_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let key = (consumer.to_owned(), message_id);
        let mut fresh = false;
        self.write(|t| {
            if t.inbox.contains_key(&key) {
                return Ok(Box::new(|_| {}));
            }
            fresh = true;
            t.inbox.insert(key.clone(), at);
            Ok(Box::new(move |t| {
                t.inbox.remove(&key);
            }))
        })?;
        Ok(fresh)
    }

    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut purged = 0;
        self.write(|t| {
            let removed: Vec<_> = t
                .inbox
                .iter()
                .filter(|(_, at)| **at < before)
                .map(|(k, at)| (k.clone(), *at))
                .collect();
            for (k, _) in &removed {
                t.inbox.remove(k);
            }
            purged = removed.len() as u64;
            Ok(Box::new(move |t| t.inbox.extend(removed)))
        })?;
        Ok(purged)
    }
}

#[async_trait]
impl IdempotencyStore for MemoryTransaction {
    async fn claim(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let id = (scope.to_owned(), key.to_owned());
        if let Some(existing) = self.tables()?.idempotency.get(&id) {
            return Ok(Claim::Existing(existing.clone()));
        }
        let record = IdempotencyRecord {
            fingerprint: fingerprint.to_owned(),
            response: None,
            created_at: at,
        };
        self.write(|t| {
            t.idempotency.insert(id.clone(), record);
            Ok(Box::new(move |t| {
                t.idempotency.remove(&id);
            }))
        })?;
        Ok(Claim::Claimed)
    }

    async fn complete(
        &mut self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let id = (scope.to_owned(), key.to_owned());
        let response = response.clone();
        self.write(|t| {
            let record = t
                .idempotency
                .get_mut(&id)
                .ok_or_else(|| StoreError::Unexpected("idempotency key was not claimed".into()))?;
            let previous = record.response.replace(response);
            Ok(Box::new(move |t| {
                if let Some(record) = t.idempotency.get_mut(&id) {
                    record.response = previous;
                }
            }))
        })
    }

    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut purged = 0;
        self.write(|t| {
            let removed: Vec<_> = t
                .idempotency
                .iter()
                .filter(|(_, r)| r.created_at < before)
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect();
            for (k, _) in &removed {
                t.idempotency.remove(k);
            }
            purged = removed.len() as u64;
            Ok(Box::new(move |t| t.idempotency.extend(removed)))
        })?;
        Ok(purged)
    }
}
