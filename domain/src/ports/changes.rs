//! Which orders changed: committed steps of orders, as the store announces them, so that readers
//! waiting for an order (event streams, long polls) wake up without polling — whichever instance
//! of the service made the change.

use crate::ids::OrderId;

/// What the feed has to say next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderChanges {
    /// These orders had a step committed.
    Changed(Vec<OrderId>),
    /// Announcements may have been lost (the feed reconnected, or fell behind): any order may
    /// have changed.
    Missed,
}

/// The store's announcements of committed order changes (PostgreSQL: `LISTEN/NOTIFY`; memory:
/// at commit). One reader per process fans them out.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait::async_trait]
pub trait OrderChangeFeed: Send + Sync {
    /// Waits for the next announcement. A feed that cannot reach its store waits and then says
    /// [`OrderChanges::Missed`]; it never fails.
    async fn next(&self) -> OrderChanges;
}
