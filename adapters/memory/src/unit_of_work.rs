//! The in-memory unit of work: every table of both services behind one lock, and the
//! transaction that the repository, outbox, inbox and idempotency modules implement their ports on.
//!
//! A transaction holds the lock from `begin` to commit or drop, so transactions are serializable
//! (one at a time), like a database with a single writer. Writes go straight into the tables and
//! leave an undo entry; dropping a transaction without committing replays the undo log, so a
//! rolled-back transaction leaves nothing behind — the same guarantee the Postgres adapter gets
//! from its database.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{
    Committed, DeadLetter, DeadLetters, DeliveryRepository, DeliveryTransaction, IdempotencyRecord,
    IdempotencyStore, Inbox, OrderRepository, OrderTransaction, Outbox, OutboxSignal, RelayLeases,
    SagaRepository, StoreError, Transaction, UnitOfWork,
};
use ordership_domain::relay_shards::{Shard, Shards};
use ordership_domain::saga::SagaStepRecord;
use ordership_domain::waiting_room::{RoomId, WaitingRoom};
use ordership_domain::{
    Delivery, DeliveryId, FulfilmentSaga, Message, MessageId, Order, OrderId, OutboxEntry,
};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard, broadcast};

#[derive(Debug, Default)]
pub(crate) struct Tables {
    pub(crate) orders: BTreeMap<OrderId, Order>,
    pub(crate) sagas: BTreeMap<OrderId, FulfilmentSaga>,
    pub(crate) saga_history: BTreeMap<(OrderId, u64), SagaStepRecord>,
    pub(crate) deliveries: BTreeMap<DeliveryId, Delivery>,
    pub(crate) delivery_by_order: HashMap<OrderId, DeliveryId>,
    pub(crate) outbox: BTreeMap<i64, OutboxRow>,
    pub(crate) outbox_ids: HashMap<MessageId, i64>,
    pub(crate) pending: BTreeSet<i64>,
    pub(crate) next_position: i64,
    pub(crate) inbox: HashMap<(String, MessageId), DateTime<Utc>>,
    pub(crate) idempotency: HashMap<(String, String), IdempotencyRecord>,
    pub(crate) dead_letters: BTreeMap<i64, DeadLetter>,
    pub(crate) next_dead_letter: i64,
}

/// The waiting rooms and their stock, beside the tables under a lock of their own: the rooms are
/// read (and cached) while an order's transaction holds the tables. A transaction that takes or
/// gives back units changes them at once and undoes that if it does not commit; transactions
/// are serialised by the tables' lock, so only readers of the rooms can see units of a
/// transaction still open.
#[derive(Debug, Default)]
pub(crate) struct Rooms {
    /// The rooms' configuration, without their stock.
    pub(crate) config: BTreeMap<RoomId, WaitingRoom>,
    pub(crate) stock: BTreeMap<RoomId, StockRow>,
}

pub(crate) type SharedRooms = Arc<std::sync::Mutex<Rooms>>;

/// A room's stock as PostgreSQL's `orders.room_stock` keeps it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StockRow {
    /// `None`: the room counts no stock (now).
    pub(crate) total: Option<u32>,
    pub(crate) sold: u32,
}

/// A message in the outbox with what became of it.
#[derive(Debug)]
pub(crate) struct OutboxRow {
    pub(crate) entry: OutboxEntry,
    pub(crate) published_at: Option<DateTime<Utc>>,
    pub(crate) parked: Option<String>,
}

pub(crate) type Undo = Box<dyn FnOnce(&mut Tables) + Send>;

/// An aggregate kept in a table under its id, with an optimistic-concurrency version.
pub(crate) trait Row: Clone + Send + 'static {
    type Key: Copy + Ord + Send + 'static;
    fn key(&self) -> Self::Key;
    fn version(&self) -> u64;
}

/// Which table of [`Tables`] holds rows of type `R`.
pub(crate) type TableOf<R> = fn(&mut Tables) -> &mut BTreeMap<<R as Row>::Key, R>;

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
pub(crate) fn insert_row<R: Row>(
    tables: &mut Tables,
    table: TableOf<R>,
    row: R,
) -> Result<Undo, StoreError> {
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
pub(crate) fn update_row<R: Row>(
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

/// Rows of the tables that retention purges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub outbox: usize,
    pub inbox: usize,
    pub idempotency_keys: usize,
}

/// An in-memory database for one service (or both, in tests). Cheap to clone: clones share the
/// same tables.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    tables: Arc<Mutex<Tables>>,
    pub(crate) rooms: SharedRooms,
    committed_outbox: Arc<Notify>,
    pub(crate) changes: Changes,
}

/// Announces the orders whose steps committed ([`crate::MemoryOrderChanges`] listens).
#[derive(Debug, Clone)]
pub(crate) struct Changes(pub(crate) broadcast::Sender<OrderId>);

impl Default for Changes {
    fn default() -> Self {
        // A listener that falls this far behind is told it missed some.
        Self(broadcast::channel(4096).0)
    }
}

impl MemoryStore {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    async fn open(&self) -> MemoryTransaction {
        MemoryTransaction {
            tables: Some(Arc::clone(&self.tables).lock_owned().await),
            rooms: Arc::clone(&self.rooms),
            undo: Vec::new(),
            wrote_outbox: false,
            committed_outbox: Arc::clone(&self.committed_outbox),
            changed: Vec::new(),
            changes: self.changes.clone(),
        }
    }

    /// How many outbox messages, inbox entries and idempotency keys the store holds. For tests
    /// and checks.
    pub async fn row_counts(&self) -> RowCounts {
        let tables = self.tables.lock().await;
        RowCounts {
            outbox: tables.outbox.len(),
            inbox: tables.inbox.len(),
            idempotency_keys: tables.idempotency.len(),
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

    /// Every saga. For tests and checks.
    pub async fn sagas(&self) -> Vec<FulfilmentSaga> {
        self.tables.lock().await.sagas.values().cloned().collect()
    }

    /// Whether `consumer`'s inbox holds `id`. For tests and checks.
    pub async fn inbox_holds(&self, consumer: &str, id: MessageId) -> bool {
        let key = (consumer.to_owned(), id);
        self.tables.lock().await.inbox.contains_key(&key)
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
    async fn committed(&self) -> Committed {
        self.committed_outbox.notified().await;
        Committed::Any
    }
}

/// The outbox in memory has one shard, always this process's.
#[async_trait]
impl RelayLeases for MemoryStore {
    async fn renew(&self, _owner: &str, _term: Duration) -> Result<Shards, StoreError> {
        Ok(Shards::one(Shard { index: 0, count: 1 }))
    }

    async fn release(&self, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One transaction over a [`MemoryStore`].
pub struct MemoryTransaction {
    /// `None` only after commit.
    tables: Option<OwnedMutexGuard<Tables>>,
    pub(crate) rooms: SharedRooms,
    undo: Vec<Undo>,
    pub(crate) wrote_outbox: bool,
    committed_outbox: Arc<Notify>,
    /// Orders whose steps this transaction recorded, announced at commit.
    pub(crate) changed: Vec<OrderId>,
    changes: Changes,
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
    pub(crate) fn tables(&mut self) -> Result<&mut Tables, StoreError> {
        self.tables.as_deref_mut().ok_or_else(closed)
    }

    /// Runs a write and remembers how to undo it.
    pub(crate) fn write(
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
    fn dead_letters(&mut self) -> &mut dyn DeadLetters {
        self
    }
    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.undo.clear();
        self.tables = None;
        if self.wrote_outbox {
            self.committed_outbox.notify_one();
        }
        for order_id in self.changed.drain(..) {
            // Nobody listening is fine.
            let _ = self.changes.0.send(order_id);
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
