//! The index of dead letters in memory: the dead-letter port of a [`MemoryTransaction`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ordership_domain::Message;
use ordership_domain::ports::{
    DeadLetter, DeadLetterQuery, DeadLetterSelection, DeadLetters, StoreError,
};

use crate::unit_of_work::{MemoryTransaction, Tables};

fn selected(letter: &DeadLetter, consumer: Option<&str>, selection: &DeadLetterSelection) -> bool {
    letter.redriven_at.is_none()
        && consumer.is_none_or(|c| letter.consumer == c)
        && match selection {
            DeadLetterSelection::Ids(ids) => ids.contains(&letter.id),
            DeadLetterSelection::Between { from, to } => (*from..*to).contains(&letter.dead_at),
            DeadLetterSelection::All => true,
        }
}

fn ids_of(tables: &Tables, consumer: Option<&str>, selection: &DeadLetterSelection) -> Vec<i64> {
    tables
        .dead_letters
        .values()
        .filter(|l| selected(l, consumer, selection))
        .map(|l| l.id)
        .collect()
}

#[async_trait]
impl DeadLetters for MemoryTransaction {
    async fn record(
        &mut self,
        consumer: &str,
        message: &Message,
        reason: &str,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tables = self.tables()?;
        let dead_already = tables.dead_letters.values().any(|l| {
            l.redriven_at.is_none() && l.consumer == consumer && l.message.id == message.id
        });
        if dead_already {
            return Ok(());
        }
        tables.next_dead_letter += 1;
        let id = tables.next_dead_letter;
        let letter = DeadLetter {
            id,
            consumer: consumer.to_owned(),
            message: message.clone(),
            reason: reason.to_owned(),
            attempts,
            dead_at: at,
            redriven_at: None,
        };
        self.write(|t| {
            t.dead_letters.insert(id, letter);
            Ok(Box::new(move |t| {
                t.dead_letters.remove(&id);
            }))
        })
    }

    async fn list(&mut self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, StoreError> {
        let tables = self.tables()?;
        Ok(tables
            .dead_letters
            .range(query.after.map_or(i64::MIN, |a| a.saturating_add(1))..)
            .map(|(_, l)| l)
            .filter(|l| query.include_redriven || l.redriven_at.is_none())
            .filter(|l| query.consumer.as_deref().is_none_or(|c| l.consumer == c))
            .take(query.limit as usize)
            .cloned()
            .collect())
    }

    async fn get(&mut self, id: i64) -> Result<Option<DeadLetter>, StoreError> {
        Ok(self.tables()?.dead_letters.get(&id).cloned())
    }

    async fn take_for_redrive(
        &mut self,
        consumer: Option<&str>,
        selection: &DeadLetterSelection,
        at: DateTime<Utc>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let ids = ids_of(self.tables()?, consumer, selection);
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            let mut moved = None;
            self.write(|t| {
                if let Some(letter) = t.dead_letters.get_mut(&id) {
                    letter.redriven_at = Some(at);
                    moved = Some(letter.clone());
                }
                Ok(Box::new(move |t| {
                    if let Some(letter) = t.dead_letters.get_mut(&id) {
                        letter.redriven_at = None;
                    }
                }))
            })?;
            taken.extend(moved);
        }
        Ok(taken)
    }

    async fn purge(
        &mut self,
        consumer: Option<&str>,
        selection: &DeadLetterSelection,
    ) -> Result<u64, StoreError> {
        let ids = ids_of(self.tables()?, consumer, selection);
        let n = ids.len() as u64;
        for id in ids {
            self.write(|t| {
                let removed = t.dead_letters.remove(&id);
                Ok(Box::new(move |t| {
                    if let Some(letter) = removed {
                        t.dead_letters.insert(id, letter);
                    }
                }))
            })?;
        }
        Ok(n)
    }
}
