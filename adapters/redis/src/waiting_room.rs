//! The waiting room's queue on Redis: the scripts, the connections (standalone or Cluster), and
//! the [`WaitingRoomQueue`] port over them.

use std::sync::Arc;

use async_trait::async_trait;
use ordership_domain::CustomerId;
use ordership_domain::ports::{QueueError, QueueRules, QueueStats, WaitingRoomQueue};
use ordership_domain::waiting_room::{EntryStatus, RoomId, Ticket, millis};

use redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};

use crate::replication::{Durability, NotReplicated, Replicated};

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

/// The scripts, hashed once.
struct Scripts {
    join: Script,
    status: Script,
    leave: Script,
    release: Script,
    tick: Script,
    stats: Script,
    expire: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            join: script!("lua/join.lua"),
            status: script!("lua/status.lua"),
            leave: script!("lua/leave.lua"),
            release: script!("lua/release.lua"),
            tick: script!("lua/tick.lua"),
            stats: script!("lua/stats.lua"),
            expire: script!("lua/expire.lua"),
        }
    }
}

/// The admission queues of every room, on one Redis deployment.
pub struct RedisWaitingRoomQueue<C> {
    connection: C,
    scripts: Arc<Scripts>,
    durability: Durability,
}

impl<C> std::fmt::Debug for RedisWaitingRoomQueue<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisWaitingRoomQueue")
            .finish_non_exhaustive()
    }
}

/// A Redis command that failed, named by the queue operation that sent it: what a log shows
/// points at one script.
#[derive(Debug, thiserror::Error)]
#[error("Redis, {operation}: {source}")]
struct Failed {
    operation: &'static str,
    #[source]
    source: RedisError,
}

/// Whether a command failed for want of Redis (lost or refused connections, timeouts, cluster
/// errors: a slot moving, the cluster down, no node of it reachable; a node that is loading, a
/// replica asked to write, a replica whose master is down: a failover under way) rather than by
/// its answer.
pub(crate) fn unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::ReadOnly
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                )
        )
}

/// Classifies a failed command of `operation`: lost or refused connections, timeouts and cluster
/// errors (a slot moving, the cluster down, no node of it reachable) are unavailability (retry
/// later), anything else is unexpected.
pub(crate) fn failed_in(operation: &'static str) -> impl Fn(RedisError) -> QueueError {
    move |source| {
        let unavailable = unavailable(&source);
        let failed = Box::new(Failed { operation, source });
        if unavailable {
            QueueError::Unavailable(failed)
        } else {
            QueueError::Unexpected(failed)
        }
    }
}

fn corrupt(what: &str, value: &Value) -> QueueError {
    QueueError::Unexpected(format!("unexpected reply for {what}: {value:?}").into())
}

fn int(value: &Value) -> Option<u64> {
    match value {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        _ => None,
    }
}

/// `{'waiting', ticket, position, waiting}` or `{'admitted', ticket, admitted at}`.
fn entry_status(value: &Value) -> Result<EntryStatus, QueueError> {
    let parsed = match value {
        Value::Array(items) => match items.as_slice() {
            [Value::BulkString(kind), ticket, position, waiting] if kind == b"waiting" => {
                Some(EntryStatus::Waiting {
                    ticket: Ticket(int(ticket).unwrap_or_default()),
                    position: int(position).unwrap_or_default(),
                    waiting: int(waiting).unwrap_or_default(),
                })
            }
            [Value::BulkString(kind), ticket, at] if kind == b"admitted" => {
                Some(EntryStatus::Admitted {
                    ticket: Ticket(int(ticket).unwrap_or_default()),
                    admitted_at_ms: int(at).unwrap_or_default(),
                })
            }
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| corrupt("an entry", value))
}

/// The keys of a room, all in its hash slot.
fn keys(room: &RoomId) -> [String; 6] {
    let tag = format!("{{wr:{room}}}");
    [
        format!("{tag}:seq"),
        format!("{tag}:waiting"),
        format!("{tag}:entries"),
        format!("{tag}:meta"),
        format!("{tag}:recent"),
        format!("{tag}:holding"),
    ]
}

impl<C: Replicated> RedisWaitingRoomQueue<C> {
    /// A queue whose admissions are told once `durability` holds.
    #[must_use]
    pub fn new(connection: C, durability: Durability) -> Self {
        Self {
            connection,
            scripts: Arc::new(Scripts::new()),
            durability,
        }
    }

    /// `status` as it may be told: an admission only once it is on the replicas asked for (the
    /// script's own write came after the admission's, and a replica applies a master's writes
    /// in order, so acknowledging it acknowledges the admission).
    async fn durable(&self, room: &RoomId, status: EntryStatus) -> Result<EntryStatus, QueueError> {
        let wanted = self.durability.replicas;
        if wanted == 0 || !matches!(status, EntryStatus::Admitted { .. }) {
            return Ok(status);
        }
        let [seq, ..] = keys(room);
        let mut connection = self.connection.clone();
        // Any failure of the WAIT leaves the admission unconfirmed: the buyer asks again. (After
        // a failover a stale slot map may send it to the old master, now a replica, which
        // refuses WAIT outright.)
        let acknowledged = connection
            .replicated(&seq, wanted, self.durability.timeout)
            .await
            .map_err(|source| {
                QueueError::Unavailable(Box::new(Failed {
                    operation: "wait for replicas",
                    source,
                }))
            })?;
        if acknowledged < u64::from(wanted) {
            return Err(QueueError::Unavailable(Box::new(NotReplicated {
                acknowledged,
                wanted,
            })));
        }
        Ok(status)
    }

    async fn run(
        &self,
        operation: &'static str,
        script: &Script,
        room: &RoomId,
        args: &[String],
    ) -> Result<Value, QueueError> {
        let mut invocation = script.prepare_invoke();
        for key in keys(room) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut connection = self.connection.clone();
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(failed_in(operation))
    }
}

/// The seed as the scripts take it: below 2^31, exact in Lua's doubles (the draw reduces it so
/// anyway).
fn draw_seed(rules: &QueueRules) -> String {
    (rules.draw_seed % 2_147_483_646).to_string()
}

/// The admission validity and the holding limit, as the join and tick scripts take them.
fn holding(rules: &QueueRules) -> [String; 2] {
    [
        millis(rules.admission_validity).to_string(),
        rules.holding_limit.map_or(-1, i64::from).to_string(),
    ]
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_owned()
}

#[async_trait]
impl<C: Replicated> WaitingRoomQueue for RedisWaitingRoomQueue<C> {
    async fn ping(&self) -> Result<(), QueueError> {
        let mut connection = self.connection.clone();
        redis::cmd("PING")
            .query_async::<()>(&mut connection)
            .await
            .map_err(failed_in("ping"))
    }

    async fn join(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        returning: Option<Ticket>,
        rules: &QueueRules,
    ) -> Result<EntryStatus, QueueError> {
        let [validity, limit] = holding(rules);
        let args = [
            buyer.as_str().to_owned(),
            returning.map_or(0, |t| t.0).to_string(),
            rules.rate.admissions().to_string(),
            millis(rules.rate.interval()).to_string(),
            flag(rules.admitting),
            draw_seed(rules),
            validity,
            limit,
        ];
        let reply = self.run("join", &self.scripts.join, room, &args).await?;
        self.durable(room, entry_status(&reply)?).await
    }

    async fn status(
        &self,
        room: &RoomId,
        buyer: &CustomerId,
        rules: &QueueRules,
    ) -> Result<Option<EntryStatus>, QueueError> {
        let args = [
            buyer.as_str().to_owned(),
            millis(rules.heartbeat_timeout).to_string(),
        ];
        match self
            .run("status", &self.scripts.status, room, &args)
            .await?
        {
            Value::Nil => Ok(None),
            reply => Ok(Some(self.durable(room, entry_status(&reply)?).await?)),
        }
    }

    async fn release(&self, room: &RoomId, buyer: &CustomerId) -> Result<(), QueueError> {
        self.run(
            "release",
            &self.scripts.release,
            room,
            &[buyer.as_str().to_owned()],
        )
        .await
        .map(drop)
    }

    async fn leave(&self, room: &RoomId, buyer: &CustomerId) -> Result<bool, QueueError> {
        let reply = self
            .run(
                "leave",
                &self.scripts.leave,
                room,
                &[buyer.as_str().to_owned()],
            )
            .await?;
        Ok(int(&reply).is_some_and(|n| n > 0))
    }

    async fn tick(
        &self,
        room: &RoomId,
        rules: &QueueRules,
    ) -> Result<Vec<(CustomerId, Ticket)>, QueueError> {
        let [validity, limit] = holding(rules);
        let args = [
            rules.rate.admissions().to_string(),
            millis(rules.rate.interval()).to_string(),
            millis(rules.heartbeat_timeout).to_string(),
            flag(rules.admitting),
            draw_seed(rules),
            validity,
            limit,
        ];
        let reply = self.run("tick", &self.scripts.tick, room, &args).await?;
        let Value::Array(items) = &reply else {
            return Err(corrupt("a tick", &reply));
        };
        items
            .chunks(2)
            .map(|pair| match pair {
                [Value::BulkString(buyer), ticket] => {
                    let buyer = std::str::from_utf8(buyer)
                        .ok()
                        .and_then(|b| CustomerId::parse(b).ok());
                    match (buyer, int(ticket)) {
                        (Some(buyer), Some(ticket)) => Ok((buyer, Ticket(ticket))),
                        _ => Err(corrupt("a tick", &reply)),
                    }
                }
                _ => Err(corrupt("a tick", &reply)),
            })
            .collect()
    }

    async fn expire(&self, room: &RoomId, after: std::time::Duration) -> Result<(), QueueError> {
        let args = [millis(after).max(1).to_string()];
        self.run("expire", &self.scripts.expire, room, &args)
            .await
            .map(drop)
    }

    async fn stats(&self, room: &RoomId, rules: &QueueRules) -> Result<QueueStats, QueueError> {
        let args = [
            millis(rules.rate.interval()).to_string(),
            millis(rules.admission_validity).to_string(),
        ];
        let reply = self.run("stats", &self.scripts.stats, room, &args).await?;
        match &reply {
            Value::Array(items) => match items.iter().map(int).collect::<Option<Vec<_>>>() {
                Some(n) if n.len() == 5 => Ok(QueueStats {
                    waiting: n[0],
                    admitted: n[1],
                    admitted_in_window: u32::try_from(n[2]).unwrap_or(u32::MAX),
                    last_ticket: n[3],
                    holding: u32::try_from(n[4]).unwrap_or(u32::MAX),
                }),
                _ => Err(corrupt("stats", &reply)),
            },
            _ => Err(corrupt("stats", &reply)),
        }
    }
}
