//! `LISTEN` connections: one wakes the relay when an outbox insert commits, one announces the
//! orders whose saga steps committed (the saga history's trigger).

use std::time::Duration;

use async_trait::async_trait;
use ordership_domain::OrderId;
use ordership_domain::ports::{Committed, OrderChangeFeed, OrderChanges, OutboxSignal};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};
use tokio::sync::Mutex;

use crate::schema::Schema;

/// The channel the saga history's trigger notifies, with the order id as payload.
pub const ORDER_CHANGED_CHANNEL: &str = "ordership_order_changed";

/// One `LISTEN` connection on one channel. On connection trouble it reconnects (sqlx does) and
/// says that notifications may have been missed.
struct Listening {
    listener: Mutex<Connection>,
    pool: PgPool,
    channel: &'static str,
}

#[derive(Default)]
struct Connection {
    listener: Option<PgListener>,
    /// Connected before: a new connection may have missed notifications.
    ever: bool,
}

impl Listening {
    fn new(pool: PgPool, channel: &'static str) -> Self {
        Self {
            listener: Mutex::default(),
            pool,
            channel,
        }
    }

    /// The next notification, or `None` when some may have been missed: the connection was
    /// reopened, or lost. After a failed connect it waits a second first.
    async fn next(&self) -> Option<PgNotification> {
        let mut guard = self.listener.lock().await;
        if guard.listener.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => match listener.listen(self.channel).await {
                    Ok(()) => guard.listener = Some(listener),
                    Err(e) => tracing::warn!(error = %e, channel = self.channel, "LISTEN failed"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot open the LISTEN connection"),
            }
            if guard.listener.is_none() {
                drop(guard);
                // Let the callers' own polling take over for a while.
                tokio::time::sleep(Duration::from_secs(1)).await;
                return None;
            }
            if std::mem::replace(&mut guard.ever, true) {
                return None;
            }
        }
        let listener = guard.listener.as_mut()?;
        match listener.try_recv().await {
            Ok(Some(notification)) => Some(notification),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, channel = self.channel, "LISTEN connection lost; reconnecting");
                guard.listener = None;
                None
            }
        }
    }

    /// Notifications already received, without waiting.
    async fn buffered(&self) -> Vec<PgNotification> {
        let mut guard = self.listener.lock().await;
        let mut all = Vec::new();
        if let Some(listener) = guard.listener.as_mut() {
            while let Some(notification) = listener.next_buffered() {
                all.push(notification);
            }
        }
        all
    }
}

/// `LISTEN`s on a schema's outbox channel, to wake the relay; the relay also polls.
pub struct PgOutboxSignal(Listening);

impl std::fmt::Debug for PgOutboxSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOutboxSignal")
            .field("channel", &self.0.channel)
            .finish_non_exhaustive()
    }
}

impl PgOutboxSignal {
    #[must_use]
    pub fn new(pool: PgPool, schema: &'static Schema) -> Self {
        Self(Listening::new(pool, schema.notify_channel))
    }
}

#[async_trait]
impl OutboxSignal for PgOutboxSignal {
    async fn committed(&self) -> Committed {
        // A notification names the key hashes of what committed; a reconnection (after which
        // one may have been missed) concerns every shard.
        self.0
            .next()
            .await
            .map_or(Committed::Any, |n| committed_keys(n.payload()))
    }
}

/// The outbox trigger's payload: the key hashes, comma-separated; empty (too many to list) or
/// unreadable: any.
fn committed_keys(payload: &str) -> Committed {
    if payload.is_empty() {
        return Committed::Any;
    }
    payload
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<u32>, _>>()
        .map_or(Committed::Any, Committed::Keys)
}

/// The orders whose saga steps committed, from any instance: `LISTEN` on the saga history's
/// channel.
pub struct PgOrderChanges(Listening);

impl std::fmt::Debug for PgOrderChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOrderChanges").finish_non_exhaustive()
    }
}

impl PgOrderChanges {
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self(Listening::new(pool, ORDER_CHANGED_CHANNEL))
    }
}

fn order_of(notification: &PgNotification) -> Option<OrderId> {
    let id = uuid::Uuid::parse_str(notification.payload()).ok();
    if id.is_none() {
        tracing::warn!(
            payload = notification.payload(),
            "order change without an order id"
        );
    }
    id.map(OrderId::from_uuid)
}

#[async_trait]
impl OrderChangeFeed for PgOrderChanges {
    async fn next(&self) -> OrderChanges {
        let Some(first) = self.0.next().await else {
            return OrderChanges::Missed;
        };
        let mut changed: Vec<OrderId> = order_of(&first).into_iter().collect();
        changed.extend(self.0.buffered().await.iter().filter_map(order_of));
        OrderChanges::Changed(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outbox_payload_names_key_hashes_or_any() {
        assert_eq!(committed_keys("12,7"), Committed::Keys(vec![12, 7]));
        assert_eq!(committed_keys(""), Committed::Any);
        assert_eq!(committed_keys("12,x"), Committed::Any);
    }
}
