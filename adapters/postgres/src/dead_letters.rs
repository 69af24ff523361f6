//! The index of dead letters of every service's schema.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::Message;
use ordership_domain::ports::{
    DeadLetter, DeadLetterQuery, DeadLetterSelection, DeadLetters, StoreError,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::error::{corrupt, failed_in};
use crate::outbox::{bind_message, message_from_columns};
use crate::unit_of_work::PgTx;

fn dead_letter(row: &PgRow) -> Result<DeadLetter, StoreError> {
    let get = failed_in("dead_letters::dead_letter");
    let attempts: i32 = row.try_get("attempts").map_err(&get)?;
    Ok(DeadLetter {
        id: row.try_get("id").map_err(&get)?,
        consumer: row.try_get("consumer").map_err(&get)?,
        message: message_from_columns(
            row.try_get("message_id").map_err(&get)?,
            row.try_get("topic").map_err(&get)?,
            row.try_get("key").map_err(&get)?,
            row.try_get("message_type").map_err(&get)?,
            row.try_get("payload").map_err(&get)?,
            row.try_get("headers").map_err(&get)?,
            row.try_get("created_at").map_err(&get)?,
        )?,
        reason: row.try_get("reason").map_err(&get)?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("dead letter attempts", attempts))?,
        dead_at: row.try_get("dead_at").map_err(&get)?,
        redriven_at: row.try_get("redriven_at").map_err(&get)?,
    })
}

/// The selection as bind values: ids (`None`: any), and the time range's ends (`None`: open).
type Bounds = (
    Option<Vec<i64>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn bounds(selection: &DeadLetterSelection) -> Bounds {
    match selection {
        DeadLetterSelection::Ids(ids) => (Some(ids.clone()), None, None),
        DeadLetterSelection::Between { from, to } => (None, Some(*from), Some(*to)),
        DeadLetterSelection::All => (None, None, None),
    }
}

#[async_trait]
impl DeadLetters for PgTx {
    async fn record(
        &mut self,
        consumer: &str,
        message: &Message,
        reason: &str,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        bind_message(self.schema.sql.dead_letters.record, message)?
            .bind(consumer)
            .bind(reason)
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .bind(at)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed("dead_letters::record", e))?;
        Ok(())
    }

    async fn list(&mut self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(self.schema.sql.dead_letters.list)
            .bind(query.consumer.as_deref())
            .bind(query.include_redriven)
            .bind(query.after.unwrap_or(0))
            .bind(i64::from(query.limit))
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| self.failed("dead_letters::list", e))?;
        rows.iter().map(dead_letter).collect()
    }

    async fn get(&mut self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        let row = sqlx::query(self.schema.sql.dead_letters.get)
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(|e| self.failed("dead_letters::get", e))?;
        row.as_ref().map(dead_letter).transpose()
    }

    async fn take_for_redrive(
        &mut self,
        consumer: Option<&str>,
        selection: &DeadLetterSelection,
        at: DateTime<Utc>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let (ids, from, to) = bounds(selection);
        let rows = sqlx::query(self.schema.sql.dead_letters.redrive)
            .bind(consumer)
            .bind(ids)
            .bind(from)
            .bind(to)
            .bind(at)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(|e| self.failed("dead_letters::take_for_redrive", e))?;
        let mut taken = rows
            .iter()
            .map(dead_letter)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING follows no ORDER BY: the order they died in is the order they go back in.
        taken.sort_by_key(|l| l.id);
        Ok(taken)
    }

    async fn purge(
        &mut self,
        consumer: Option<&str>,
        selection: &DeadLetterSelection,
    ) -> Result<u64, StoreError> {
        let (ids, from, to) = bounds(selection);
        let done = sqlx::query(self.schema.sql.dead_letters.purge)
            .bind(consumer)
            .bind(ids)
            .bind(from)
            .bind(to)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| self.failed("dead_letters::purge", e))?;
        Ok(done.rows_affected())
    }
}
