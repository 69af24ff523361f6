//! The polling relay shared by several instances: each instance leases a fair share of the
//! outbox's shards (renewing every third of a lease's term) and relays them, woken by commits of
//! keys in its shards. A round relays all of an instance's shards in one transaction, so a
//! shard costs no transaction of its own while the load is light; while a backlog lasts (the
//! last round came full) each shard gets a transaction of its own and they run at once. When
//! an instance joins, the others give shards up at their next renewal and it takes them; when
//! one dies, the others take its shards over; at shutdown an instance gives its leases up at
//! once. Which instance publishes a shard is decided by the leases, but per-key order rests on
//! the shards' relay rights alone (`Outbox::try_lock_relay`), so it holds even while two
//! instances both believe they lease a shard.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use ordership_domain::ports::{Committed, OutboxSignal, PublishError, RelayLeases, Transaction};
use ordership_domain::relay_shards::{Shards, WantedShards};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::{OutboxRelay, RelayError, Relayed, relay_loop};
use crate::shutdown::{Shutdown, ShutdownTrigger};

/// A name for this process among an outbox's relay instances, unique per process (a restarted
/// process is a new instance): `service`, the host's name (`HOSTNAME`, a pod's or container's
/// name) when set, and a random suffix.
#[must_use]
pub fn relay_instance_name(service: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    match std::env::var("HOSTNAME") {
        Ok(host) if !host.is_empty() => format!("{service}-{host}-{}", &suffix[..8]),
        _ => format!("{service}-{}", &suffix[..8]),
    }
}

/// Aborts its task when dropped, also when the relay's own task is (the wake-up router must not
/// outlive it).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the instance's relay loop waits on: a commit of a key in its shards (routed by
/// `route_wakeups`), or a shard newly leased.
struct Wake(Arc<Notify>);

#[async_trait]
impl OutboxSignal for Wake {
    async fn committed(&self) -> Committed {
        self.0.notified().await;
        Committed::Any
    }
}

impl<Tx: ?Sized + Transaction + 'static> OutboxRelay<Tx> {
    /// Relays the shards instance `owner` leases until `shutdown`, then gives its leases up.
    /// Leases last `lease_term` of the relay's configuration and are renewed every third of it.
    pub async fn run_sharded(
        self: Arc<Self>,
        leases: Arc<dyn RelayLeases>,
        owner: String,
        mut shutdown: Shutdown,
    ) {
        let term = self.core.config.lease_term;
        let leased = Arc::new(Mutex::new(Shards::default()));
        let wake = Arc::new(Notify::new());
        let _router = AbortOnDrop(tokio::spawn(route_wakeups(
            Arc::clone(&self.core.signal),
            Arc::clone(&leased),
            Arc::clone(&wake),
        )));
        let (stop, worker_shutdown) = ShutdownTrigger::new();
        let worker = tokio::spawn(Arc::clone(&self).relay_leased(
            Arc::clone(&leased),
            Arc::clone(&wake),
            worker_shutdown,
        ));
        let mut renewed = Instant::now();
        loop {
            match leases.renew(&owner, term).await {
                Ok(renewal) => {
                    renewed = Instant::now();
                    let mut shards = leased.lock().unwrap_or_else(PoisonError::into_inner);
                    let gained = renewal.indexes.iter().any(|i| !shards.indexes.contains(i));
                    *shards = renewal;
                    self.core
                        .metrics
                        .shards_leased
                        .store(shards.indexes.len() as u64, Ordering::Relaxed);
                    if gained {
                        // A shard taken over may hold a backlog: look at once.
                        wake.notify_one();
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the relay's shard leases failed");
                    let mut shards = leased.lock().unwrap_or_else(PoisonError::into_inner);
                    if renewed.elapsed() > term && !shards.is_empty() {
                        // The leases ran out: other instances may be taking the shards over (a
                        // round under way keeps its rights until it ends; none starts after).
                        tracing::warn!(
                            shards = shards.indexes.len(),
                            "the relay's shard leases expired; relaying none until renewed"
                        );
                        *shards = Shards::default();
                        self.core.metrics.shards_leased.store(0, Ordering::Relaxed);
                    }
                }
            }
            if shutdown.pause(term / 3).await {
                break;
            }
        }
        // The round in flight is abandoned: its transaction rolls back, and its batches are sent
        // again by the shards' next holders.
        stop.trigger();
        let _ = worker.await;
        self.core.metrics.shards_leased.store(0, Ordering::Relaxed);
        if let Err(e) = leases.release(&owner).await {
            tracing::warn!(error = %e, "giving the relay's shard leases up failed; they expire");
        }
    }

    /// The instance's relay loop over the shards in `leased` (read at each round).
    async fn relay_leased(
        self: Arc<Self>,
        leased: Arc<Mutex<Shards>>,
        wake: Arc<Notify>,
        shutdown: Shutdown,
    ) {
        let backlog = AtomicBool::new(false);
        let (relay, backlog, leased) = (&self, &backlog, &leased);
        relay_loop(
            &self.core.config,
            &Wake(wake),
            shutdown,
            move || async move {
                let shards = leased
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .indexes
                    .clone();
                let relayed = relay
                    .relay_round(shards, backlog.load(Ordering::Relaxed))
                    .await;
                backlog.store(relayed.as_ref().is_ok_and(|r| r.more), Ordering::Relaxed);
                relayed
            },
        )
        .await;
    }

    /// One round over `shards`: one transaction for all of them, or, draining a `backlog`, one
    /// transaction per shard, all at once.
    async fn relay_round(
        self: &Arc<Self>,
        shards: Vec<u32>,
        backlog: bool,
    ) -> Result<Relayed, RelayError> {
        if shards.is_empty() {
            return Ok(Relayed::NOTHING);
        }
        if !backlog || shards.len() == 1 {
            return self.relay_shards(WantedShards::Only(shards)).await;
        }
        // Aborted when dropped (shutdown), like a round in one transaction.
        let mut rounds = JoinSet::new();
        for index in shards {
            let relay = Arc::clone(self);
            rounds.spawn(
                async move { relay.relay_shards(WantedShards::Only(vec![index])).await }
                    .in_current_span(),
            );
        }
        let mut all = Relayed::NOTHING;
        let mut failure = None;
        while let Some(done) = rounds.join_next().await {
            match done {
                Ok(Ok(relayed)) => {
                    all.messages += relayed.messages;
                    all.more |= relayed.more;
                }
                Ok(Err(e)) => failure = failure.or(Some(e)),
                Err(e) => {
                    failure = failure.or(Some(RelayError::Publish(PublishError::Unavailable(
                        format!("a shard's relay task failed: {e}").into(),
                    ))));
                }
            }
        }
        failure.map_or(Ok(all), Err)
    }
}

/// Wakes the instance's relay loop when keys of its shards committed.
async fn route_wakeups(
    signal: Arc<dyn OutboxSignal>,
    leased: Arc<Mutex<Shards>>,
    wake: Arc<Notify>,
) {
    loop {
        let committed = signal.committed().await;
        if committed.concerns(&leased.lock().unwrap_or_else(PoisonError::into_inner)) {
            wake.notify_one();
        }
    }
}
