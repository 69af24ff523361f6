//! Fulfilment sagas in memory: the saga repository of a [`MemoryTransaction`], with deadline
//! claims.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{SagaQuery, SagaRepository, StoreError};
use ordership_domain::saga::SagaStepRecord;
use ordership_domain::{FulfilmentSaga, OrderId, SagaState};

use crate::unit_of_work::{MemoryTransaction, insert_row, update_row};

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

    async fn list(&mut self, query: &SagaQuery) -> Result<Vec<FulfilmentSaga>, StoreError> {
        let tables = self.tables()?;
        let from = query
            .after
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        Ok(tables
            .sagas
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, saga)| saga)
            .filter(|saga| query.state.is_none_or(|state| saga.state() == state))
            .filter(|saga| query.updated_before.is_none_or(|t| saga.updated_at() < t))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn record_step(&mut self, step: &SagaStepRecord) -> Result<(), StoreError> {
        let key = (step.order_id, step.seq);
        let step = step.clone();
        self.write(|t| {
            if t.saga_history.contains_key(&key) {
                return Err(StoreError::Duplicate);
            }
            t.saga_history.insert(key, step);
            Ok(Box::new(move |t| {
                t.saga_history.remove(&key);
            }))
        })?;
        self.changed.push(key.0);
        Ok(())
    }

    async fn history(
        &mut self,
        order_id: OrderId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<SagaStepRecord>, StoreError> {
        Ok(self
            .tables()?
            .saga_history
            .range((order_id, after.saturating_add(1))..=(order_id, u64::MAX))
            .take(limit as usize)
            .map(|(_, step)| step.clone())
            .collect())
    }

    async fn count_by_state(&mut self) -> Result<Vec<(SagaState, u64)>, StoreError> {
        let mut counts: BTreeMap<SagaState, u64> = BTreeMap::new();
        for saga in self.tables()?.sagas.values() {
            *counts.entry(saga.state()).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }
}
