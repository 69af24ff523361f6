//! The outbox in memory: messages in position order, claimed, parked and marked published in
//! the transaction that appended them or the relay's. It has one shard (one process relays it).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::ports::{Outbox, OutboxStats, ParkedMessage, StoreError};
use ordership_domain::relay_shards::{Shard, Shards, WantedShards};
use ordership_domain::{Message, OutboxEntry};

use crate::unit_of_work::{MemoryTransaction, OutboxRow};

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

    async fn try_lock_relay(&mut self, wanted: WantedShards) -> Result<Shards, StoreError> {
        // One process, one shard: transactions are serialized already, so the relay holding
        // one is alone.
        self.tables()?;
        let held = match wanted {
            WantedShards::Every => true,
            WantedShards::Only(indexes) => indexes.contains(&0),
        };
        Ok(if held {
            Shards::one(Shard { index: 0, count: 1 })
        } else {
            Shards::default()
        })
    }

    async fn claim_unpublished(
        &mut self,
        _shards: &Shards,
        limit: u32,
        skip: &[i64],
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let tables = self.tables()?;
        let mut held_back = std::collections::HashSet::new();
        let mut batch = Vec::new();
        let unskipped = tables.pending.iter().filter(|p| !skip.contains(p));
        for row in unskipped.filter_map(|p| tables.outbox.get(p)) {
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

    async fn parked(&mut self, limit: u32) -> Result<Vec<ParkedMessage>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .pending
            .iter()
            .filter_map(|p| tables.outbox.get(p))
            .filter_map(|row| {
                row.parked.as_ref().map(|reason| ParkedMessage {
                    entry: row.entry.clone(),
                    reason: reason.clone(),
                })
            })
            .take(limit as usize)
            .collect())
    }

    async fn purge_parked(&mut self, positions: &[i64]) -> Result<u64, StoreError> {
        let positions = positions.to_vec();
        let mut purged = 0;
        self.write(|t| {
            let mut removed = Vec::new();
            for p in positions {
                if t.pending.contains(&p)
                    && t.outbox.get(&p).is_some_and(|r| r.parked.is_some())
                    && let Some(row) = t.outbox.remove(&p)
                {
                    t.pending.remove(&p);
                    t.outbox_ids.remove(&row.entry.message.id);
                    removed.push(row);
                }
            }
            purged = removed.len() as u64;
            Ok(Box::new(move |t| {
                for row in removed {
                    let position = row.entry.position;
                    t.outbox_ids.insert(row.entry.message.id, position);
                    t.pending.insert(position);
                    t.outbox.insert(position, row);
                }
            }))
        })?;
        Ok(purged)
    }

    async fn redrive_parked(&mut self, positions: &[i64]) -> Result<u64, StoreError> {
        let positions = positions.to_vec();
        let mut redriven = 0;
        self.write(|t| {
            let mut cleared = Vec::new();
            for p in positions {
                if t.pending.contains(&p)
                    && let Some(reason) = t.outbox.get_mut(&p).and_then(|row| row.parked.take())
                {
                    cleared.push((p, reason));
                }
            }
            redriven = cleared.len() as u64;
            Ok(Box::new(move |t| {
                for (p, reason) in cleared {
                    if let Some(row) = t.outbox.get_mut(&p) {
                        row.parked = Some(reason);
                    }
                }
            }))
        })?;
        if redriven > 0 {
            // Wake the relay at commit, as an append does.
            self.wrote_outbox = true;
        }
        Ok(redriven)
    }
}
