//! The time and identity of what a service writes, from the clock and id generator it was given.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ordership_domain::MessageId;
use ordership_domain::ports::{Clock, IdGenerator};
use uuid::Uuid;

use crate::messages::Envelope;

/// A service's clock and id generator, and the source its messages name.
#[derive(Clone)]
pub(crate) struct Stamps {
    source: &'static str,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

impl Stamps {
    pub(crate) fn new(
        source: &'static str,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self { source, clock, ids }
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn new_id(&self) -> Uuid {
        self.ids.new_id()
    }

    /// The envelope of a new message, caused by `causation`.
    pub(crate) fn envelope(&self, causation: Option<MessageId>) -> Envelope {
        Envelope {
            id: MessageId::from_uuid(self.ids.new_id()),
            source: self.source,
            at: self.clock.now(),
            causation,
        }
    }
}
