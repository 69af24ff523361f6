//! The inbox of every service's schema: `INSERT … ON CONFLICT DO NOTHING` in the effect's
//! transaction, so a duplicate is seen without a select-then-insert race.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::MessageId;
use ordership_domain::ports::{Inbox, StoreError};

use crate::unit_of_work::PgTx;

#[async_trait]
impl Inbox for PgTx {
    async fn record(
        &mut self,
        consumer: &str,
        message_id: MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(self.schema.sql.inbox_record)
            .bind(consumer)
            .bind(message_id.as_uuid())
            .bind(at)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed("inbox::record", e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(self.schema.sql.inbox_purge)
            .bind(before)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed("inbox::purge", e))?;
        Ok(done.rows_affected())
    }
}
