//! One hand-written fake per port the suites fake (mockall mocks stay where the calls matter):
//! a [`FakePublisher`] that captures what it is given, can be down and can refuse one message,
//! and a [`FakeHandler`] that records what it handles after failing as told.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use ordership_domain::ports::{
    HandleError, HandleOutcome, MessageHandler, MessagePublisher, PublishError,
};
use ordership_domain::{Message, MessageId};

/// A broker in memory: captures every batch it is given, in order. While `down` is set it is
/// unreachable; a batch holding the `refused` message is refused for good (nothing of it taken).
#[derive(Default)]
pub struct FakePublisher {
    published: Mutex<Vec<Message>>,
    /// Unreachable while set.
    pub down: AtomicBool,
    refused: Option<MessageId>,
}

impl FakePublisher {
    /// A broker that cannot be reached.
    #[must_use]
    pub fn down() -> Self {
        Self {
            down: AtomicBool::new(true),
            ..Self::default()
        }
    }

    /// A broker that refuses `message` for good and takes everything else.
    #[must_use]
    pub fn refusing(message: MessageId) -> Self {
        Self {
            refused: Some(message),
            ..Self::default()
        }
    }

    /// What was published since the last call, in order.
    pub fn take(&self) -> Vec<Message> {
        std::mem::take(
            &mut *self
                .published
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[async_trait]
impl MessagePublisher for FakePublisher {
    async fn publish(&self, batch: &[Message]) -> Result<(), PublishError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(PublishError::Unavailable("connection refused".into()));
        }
        if let Some(refused) = self.refused.filter(|id| batch.iter().any(|m| m.id == *id)) {
            return Err(PublishError::Refused {
                message_id: refused,
                reason: "message too large".into(),
            });
        }
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(batch);
        Ok(())
    }
}

/// A consumer's handler that records what it handles. It fails as told first: as if the database
/// were down while `down` is set and for the next `unavailable` messages, then with a conflict for
/// the next `transient` ones and for every message whose payload says `"conflict": true`; a
/// message whose payload's `n` is 999 is poison.
#[derive(Default)]
pub struct FakeHandler {
    pub down: AtomicBool,
    pub unavailable: AtomicU32,
    pub transient: AtomicU32,
    seen: Mutex<Vec<Message>>,
}

impl FakeHandler {
    /// Fails the next `unavailable` messages as if the database were down, then the next
    /// `transient` ones with a conflict.
    #[must_use]
    pub fn failing(unavailable: u32, transient: u32) -> Self {
        Self {
            unavailable: AtomicU32::new(unavailable),
            transient: AtomicU32::new(transient),
            ..Self::default()
        }
    }

    /// Every message handled, in order.
    pub fn seen(&self) -> Vec<Message> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every message handled, as its key and its payload's `n`.
    pub fn seen_keys(&self) -> Vec<(String, u64)> {
        self.seen()
            .iter()
            .map(|m| (m.key.clone(), m.payload["n"].as_u64().unwrap_or_default()))
            .collect()
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait]
impl MessageHandler for FakeHandler {
    async fn handle(&self, m: &Message) -> Result<HandleOutcome, HandleError> {
        if m.payload["n"].as_u64() == Some(999) {
            return Err(HandleError::Permanent("poison".into()));
        }
        if self.down.load(Ordering::SeqCst) || take_one(&self.unavailable) {
            return Err(HandleError::Unavailable("database down".into()));
        }
        if take_one(&self.transient) || m.payload["conflict"] == true {
            return Err(HandleError::Transient("version conflict".into()));
        }
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(m.clone());
        Ok(HandleOutcome::Applied)
    }
}
