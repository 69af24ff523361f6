//! Waiting for replicas: an admission is told to its buyer only once the write that made it is on
//! a replica, so a master that dies before replicating it takes with it only admissions nobody
//! holds, and the promoted replica cannot let a second set of buyers in within the interval.

use std::time::Duration;

use async_trait::async_trait;
use redis::RedisResult;
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

/// A connection that can wait for the writes it sent to a key's node to reach replicas.
#[async_trait]
pub trait Replicated: ConnectionLike + Clone + Send + Sync + 'static {
    /// `WAIT replicas timeout` on the node that holds `key`: how many replicas acknowledged
    /// every write this connection sent that node before, once `replicas` did or `timeout`
    /// passed.
    async fn replicated(&mut self, key: &str, replicas: u32, timeout: Duration)
    -> RedisResult<u64>;
}

fn wait(replicas: u32, timeout: Duration) -> redis::Cmd {
    let mut cmd = redis::cmd("WAIT");
    cmd.arg(replicas).arg(
        u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1),
    );
    cmd
}

#[async_trait]
impl Replicated for ConnectionManager {
    async fn replicated(
        &mut self,
        _key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u64> {
        wait(replicas, timeout).query_async(self).await
    }
}

#[async_trait]
impl Replicated for ClusterConnection {
    async fn replicated(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u64> {
        // To the master of the key's slot only (the client would send a bare WAIT to every
        // master and keep the lowest count: a shard without a replica would hold up every room).
        let route = Route::with_key(key, SlotAddr::Master);
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
        let reply = self.route_command(wait(replicas, timeout), routing).await?;
        Ok(redis::from_redis_value(reply)?)
    }
}

/// How an admission is made durable before it is told: on this many replicas, waiting at most
/// `timeout`. Zero replicas: told at once (a standalone Redis without replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Durability {
    /// Told at once.
    pub const NONE: Self = Self {
        replicas: 0,
        timeout: Duration::from_millis(500),
    };

    /// On `replicas` replicas, waiting at most 500 ms each time (within a command's 1 s
    /// timeout, and long enough for a replica on a loaded machine).
    #[must_use]
    pub const fn on(replicas: u32) -> Self {
        Self {
            replicas,
            ..Self::NONE
        }
    }
}

/// The waited-for replicas did not acknowledge in time.
#[derive(Debug, thiserror::Error)]
#[error("the admission is on {acknowledged} of {wanted} replicas; ask again")]
pub(crate) struct NotReplicated {
    pub(crate) acknowledged: u64,
    pub(crate) wanted: u32,
}
