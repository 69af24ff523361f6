//! Idempotency keys in memory: claimed in the request's transaction, completed with its response.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{
    Claim, IdempotencyRecord, IdempotencyStore, StoreError, StoredResponse,
};

use crate::unit_of_work::MemoryTransaction;

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
