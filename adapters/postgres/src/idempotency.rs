//! Idempotency keys on `orders.idempotency_keys`: claimed with `INSERT … ON CONFLICT`, so a
//! concurrent request with the same key waits on the row, never runs twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{
    Claim, IdempotencyRecord, IdempotencyStore, StoreError, StoredResponse,
};
use sqlx::Row;

use crate::error::{corrupt, failed_in};
use crate::unit_of_work::PgOrderTx;

const CLAIM_KEY: &str = "INSERT INTO orders.idempotency_keys (scope, key, fingerprint, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const GET_KEY: &str = "SELECT fingerprint, response_status, response_body, created_at \
     FROM orders.idempotency_keys WHERE scope = $1 AND key = $2";
const COMPLETE_KEY: &str = "UPDATE orders.idempotency_keys SET response_status = $3, response_body = $4 \
     WHERE scope = $1 AND key = $2";
const PURGE_KEYS: &str = "DELETE FROM orders.idempotency_keys WHERE created_at < $1";

#[async_trait]
impl IdempotencyStore for PgOrderTx {
    async fn claim(
        &mut self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        at: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        // A concurrent claim of the same key blocks on the primary key until the first
        // transaction ends; then it conflicts (and reads the stored response) or, if the first
        // rolled back, succeeds. The database decides, never a process-local lock.
        let inserted = sqlx::query(CLAIM_KEY)
            .bind(scope)
            .bind(key)
            .bind(fingerprint)
            .bind(at)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("idempotency::claim", e))?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Claimed);
        }
        let row = sqlx::query(GET_KEY)
            .bind(scope)
            .bind(key)
            .fetch_optional(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("idempotency::claim", e))?
            // Purged between the two statements: the caller may simply retry.
            .ok_or(StoreError::Conflict)?;
        let status: Option<i16> = row
            .try_get("response_status")
            .map_err(failed_in("idempotency::claim"))?;
        let body: Option<Vec<u8>> = row
            .try_get("response_body")
            .map_err(failed_in("idempotency::claim"))?;
        let response = match (status, body) {
            (Some(status), Some(body)) => Some(StoredResponse {
                status: u16::try_from(status).map_err(|_| corrupt("response status", status))?,
                body,
            }),
            _ => None,
        };
        Ok(Claim::Existing(IdempotencyRecord {
            fingerprint: row
                .try_get("fingerprint")
                .map_err(failed_in("idempotency::claim"))?,
            response,
            created_at: row
                .try_get("created_at")
                .map_err(failed_in("idempotency::claim"))?,
        }))
    }

    async fn complete(
        &mut self,
        scope: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let status = i16::try_from(response.status).map_err(|_| {
            StoreError::Unexpected(format!("status {} out of range", response.status).into())
        })?;
        let done = sqlx::query(COMPLETE_KEY)
            .bind(scope)
            .bind(key)
            .bind(status)
            .bind(&response.body)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("idempotency::complete", e))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::Unexpected(
                "idempotency key was not claimed".into(),
            ))
        }
    }

    async fn purge(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(PURGE_KEYS)
            .bind(before)
            .execute(&mut *self.0.tx)
            .await
            .map_err(|e| self.0.failed("idempotency::purge", e))?;
        Ok(done.rows_affected())
    }
}
