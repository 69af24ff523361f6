//! The inbox in memory: which consumer handled which message, insert-or-ignore.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::MessageId;
use ordership_domain::ports::{Inbox, StoreError};

use crate::unit_of_work::MemoryTransaction;

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
