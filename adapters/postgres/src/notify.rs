//! Wakes the relay when an outbox insert commits (`LISTEN` on the trigger's channel).

use std::time::Duration;

use async_trait::async_trait;
use ordership_domain::ports::OutboxSignal;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Mutex;

use crate::schema::Schema;

/// `LISTEN`s on a schema's outbox channel. On connection trouble it reconnects (sqlx does) and
/// reports a wake-up, since a notification may have been missed; the relay also polls.
pub struct PgOutboxSignal {
    listener: Mutex<Option<PgListener>>,
    pool: PgPool,
    channel: &'static str,
}

impl std::fmt::Debug for PgOutboxSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOutboxSignal")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl PgOutboxSignal {
    #[must_use]
    pub fn new(pool: PgPool, schema: &'static Schema) -> Self {
        Self {
            listener: Mutex::new(None),
            pool,
            channel: schema.notify_channel,
        }
    }
}

#[async_trait]
impl OutboxSignal for PgOutboxSignal {
    async fn committed(&self) {
        let mut guard = self.listener.lock().await;
        if guard.is_none() {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => match listener.listen(self.channel).await {
                    Ok(()) => *guard = Some(listener),
                    Err(e) => tracing::warn!(error = %e, channel = self.channel, "LISTEN failed"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot open the LISTEN connection"),
            }
            if guard.is_none() {
                drop(guard);
                // Let the relay's poll interval take over for a while.
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            }
        }
        if let Some(listener) = guard.as_mut()
            && let Err(e) = listener.recv().await
        {
            tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
            *guard = None;
        }
    }
}
