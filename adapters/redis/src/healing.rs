//! A connection that is made again when it answers nothing but connection errors for a while.
//!
//! The cluster client refreshes its slot map on `MOVED` and on lost connections, and rides out a
//! failover within seconds. Once, in the SIGKILLed-master test, one service's cluster connection
//! never did: the cluster was healthy again and fresh connections worked, but that one answered
//! only errors, so that instance refused every join and status call for good. A client library in
//! a bad state must not take an instance out of a sale: when every call has failed for
//! [`HEAL_AFTER`], a new connection is made from the configured nodes, in the background, and
//! replaces the old one (which calls still in flight finish on). While the deployment is really
//! down the attempts fail and the old connection stays, asked again every [`HEAL_AFTER`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::replication::Replicated;
use crate::waiting_room::unavailable;

/// How long a connection may answer nothing but connection errors before it is made again:
/// longer than a failover takes the client to follow (a few seconds).
pub const HEAL_AFTER: Duration = Duration::from_secs(5);

/// Makes a new connection.
pub(crate) type Connect<C> = Arc<dyn Fn() -> RedisFuture<'static, C> + Send + Sync>;

/// A connection of type `C`, made again by `connect` when it has failed for `heal_after`.
pub(crate) struct Healing<C> {
    shared: Arc<Shared<C>>,
}

impl<C> Clone for Healing<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<C> {
    current: RwLock<C>,
    connect: Connect<C>,
    heal_after: Duration,
    /// Since when every call has failed for want of a connection (`None`: the last call worked).
    failing_since: Mutex<Option<Instant>>,
    reconnecting: AtomicBool,
}

impl<C: Clone + Send + Sync + 'static> Healing<C> {
    pub(crate) fn new(connection: C, connect: Connect<C>, heal_after: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                current: RwLock::new(connection),
                connect,
                heal_after,
                failing_since: Mutex::new(None),
                reconnecting: AtomicBool::new(false),
            }),
        }
    }

    fn current(&self) -> C {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes how a call went; starts making a new connection when calls have failed for long
    /// enough. A server's refusal (a script error, `WAIT` on a replica) is an answer: the
    /// connection works.
    fn observe<T>(&self, result: &RedisResult<T>) {
        let shared = &self.shared;
        let mut failing = shared
            .failing_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Err(e) if unavailable(e) => {
                let since = *failing.get_or_insert_with(Instant::now);
                if since.elapsed() < shared.heal_after
                    || shared.reconnecting.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
            _ => {
                *failing = None;
                return;
            }
        }
        drop(failing);
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            match (shared.connect)().await {
                Ok(fresh) => {
                    *shared
                        .current
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = fresh;
                    *shared
                        .failing_since
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                    tracing::warn!(
                        failing_for_s = shared.heal_after.as_secs_f64(),
                        "Redis: a connection that answered only errors was made again"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Redis: a new connection could not be made yet");
                }
            }
            shared.reconnecting.store(false, Ordering::Release);
        });
    }
}

impl<C: ConnectionLike + Clone + Send + Sync + 'static> ConnectionLike for Healing<C> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let mut connection = self.current();
        Box::pin(async move {
            let result = connection.req_packed_command(cmd).await;
            self.observe(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let mut connection = self.current();
        Box::pin(async move {
            let result = connection
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.observe(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.current().get_db()
    }
}

#[async_trait]
impl<C: Replicated> Replicated for Healing<C> {
    async fn replicated(
        &mut self,
        key: &str,
        replicas: u32,
        timeout: Duration,
    ) -> RedisResult<u64> {
        let mut connection = self.current();
        let result = connection.replicated(key, replicas, timeout).await;
        self.observe(&result);
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use redis::{ErrorKind, RedisError};

    use super::*;

    /// A connection that answers every command with its generation, or fails as if its socket
    /// were gone while `broken`; or with a server error while `refusing`.
    #[derive(Clone)]
    struct Fake {
        generation: u32,
        broken: Arc<AtomicBool>,
        refusing: Arc<AtomicBool>,
    }

    impl ConnectionLike for Fake {
        fn req_packed_command<'a>(&'a mut self, _cmd: &'a Cmd) -> RedisFuture<'a, Value> {
            let answer = if self.broken.load(Ordering::Relaxed) {
                Err(RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                )))
            } else if self.refusing.load(Ordering::Relaxed) {
                Err(RedisError::from((
                    ErrorKind::UnexpectedReturnType,
                    "a refusal",
                )))
            } else {
                Ok(Value::Int(i64::from(self.generation)))
            };
            Box::pin(async move { answer })
        }

        fn req_packed_commands<'a>(
            &'a mut self,
            _pipeline: &'a Pipeline,
            _offset: usize,
            _count: usize,
        ) -> RedisFuture<'a, Vec<Value>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn get_db(&self) -> i64 {
            0
        }
    }

    /// A broken first connection, and a connector making healthy ones of the next generations.
    fn healing(first: &Fake, made: &Arc<AtomicU32>) -> Healing<Fake> {
        let made = Arc::clone(made);
        let connect: Connect<Fake> = Arc::new(move || {
            let generation = made.fetch_add(1, Ordering::Relaxed) + 1;
            Box::pin(async move {
                Ok(Fake {
                    generation,
                    broken: Arc::default(),
                    refusing: Arc::default(),
                })
            })
        });
        Healing::new(first.clone(), connect, Duration::from_millis(100))
    }

    async fn ask(connection: &mut Healing<Fake>) -> RedisResult<i64> {
        redis::cmd("PING").query_async(connection).await
    }

    #[tokio::test]
    async fn a_connection_that_only_fails_is_made_again_once_it_has_failed_long_enough() {
        let first = Fake {
            generation: 0,
            broken: Arc::new(AtomicBool::new(true)),
            refusing: Arc::default(),
        };
        let made = Arc::new(AtomicU32::new(0));
        let mut connection = healing(&first, &made);
        assert!(ask(&mut connection).await.is_err());
        assert_eq!(
            made.load(Ordering::Relaxed),
            0,
            "not before the heal period"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let answer = loop {
            if let Ok(answer) = ask(&mut connection).await {
                break answer;
            }
            assert!(Instant::now() < deadline, "made again within the deadline");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(answer, 1, "the new connection answers");
        assert_eq!(made.load(Ordering::Relaxed), 1, "made once");
    }

    #[tokio::test]
    async fn a_working_connection_and_a_refusing_server_are_kept() {
        let first = Fake {
            generation: 0,
            broken: Arc::default(),
            refusing: Arc::new(AtomicBool::new(true)),
        };
        let made = Arc::new(AtomicU32::new(0));
        let mut connection = healing(&first, &made);
        let until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < until {
            assert!(ask(&mut connection).await.is_err(), "the server refuses");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        first.refusing.store(false, Ordering::Relaxed);
        assert_eq!(
            ask(&mut connection).await.ok(),
            Some(0),
            "the same connection"
        );
        assert_eq!(made.load(Ordering::Relaxed), 0);
    }
}
