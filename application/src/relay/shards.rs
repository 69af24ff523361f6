//! The polling relay shared by several instances: each instance leases a fair share of the
//! outbox's shards (renewing every third of a lease's term) and runs one relay loop per shard
//! it leases, woken by commits of keys in that shard. When an instance joins, the others give
//! shards up at their next renewal and it takes them; when one dies, its leases expire and the
//! others take its shards over; at shutdown an instance gives its leases up at once. Which
//! instance publishes a shard is decided by the leases, but per-key order rests on the shard's
//! relay right alone (`Outbox::try_lock_relay`), so it holds even while two instances both
//! believe they lease a shard.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use ordership_domain::ports::{Committed, OutboxSignal, RelayLeases, Transaction};
use ordership_domain::relay_shards::Shard;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{OutboxRelay, relay_loop};
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

/// The shards this instance relays, and the wake-up of each.
#[derive(Default)]
struct Routes {
    count: u32,
    wakes: BTreeMap<u32, Arc<Notify>>,
}

/// Aborts its task when dropped, also when the relay's own task is (the wake-up router must not
/// outlive it).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One shard's relay loop; dropping its trigger stops it too.
struct Worker {
    stop: ShutdownTrigger,
    task: JoinHandle<()>,
}

/// What a shard's loop waits on: a commit of one of its keys (routed by the instance).
struct ShardWake(Arc<Notify>);

#[async_trait]
impl OutboxSignal for ShardWake {
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
        let routes = Arc::new(Mutex::new(Routes::default()));
        let _router = AbortOnDrop(tokio::spawn(route_wakeups(
            Arc::clone(&self.core.signal),
            Arc::clone(&routes),
        )));
        let mut workers: BTreeMap<u32, Worker> = BTreeMap::new();
        let mut renewed = Instant::now();
        loop {
            match leases.renew(&owner, term).await {
                Ok(leased) => {
                    renewed = Instant::now();
                    let mut routing = routes.lock().unwrap_or_else(PoisonError::into_inner);
                    routing.count = leased.count;
                    // A worker dropped stops (its trigger is gone); its unfinished transaction rolls
                    // back, to be relayed again by the shard's next holder.
                    workers.retain(|index, _| leased.shards.contains(index));
                    routing
                        .wakes
                        .retain(|index, _| leased.shards.contains(index));
                    for &index in &leased.shards {
                        workers.entry(index).or_insert_with(|| {
                            let wake = Arc::new(Notify::new());
                            routing.wakes.insert(index, Arc::clone(&wake));
                            self.start_worker(index, wake)
                        });
                    }
                    self.core
                        .metrics
                        .shards_leased
                        .store(workers.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the relay's shard leases failed");
                    if renewed.elapsed() > term && !workers.is_empty() {
                        // The leases ran out: other instances may be taking the shards over.
                        tracing::warn!(
                            shards = workers.len(),
                            "the relay's shard leases expired; stopping their relays"
                        );
                        routes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .wakes
                            .clear();
                        stop(std::mem::take(&mut workers)).await;
                        self.core.metrics.shards_leased.store(0, Ordering::Relaxed);
                    }
                }
            }
            if shutdown.pause(term / 3).await {
                break;
            }
        }
        stop(workers).await;
        self.core.metrics.shards_leased.store(0, Ordering::Relaxed);
        if let Err(e) = leases.release(&owner).await {
            tracing::warn!(error = %e, "giving the relay's shard leases up failed; they expire");
        }
    }

    fn start_worker(self: &Arc<Self>, index: u32, wake: Arc<Notify>) -> Worker {
        let (stop, shutdown) = ShutdownTrigger::new();
        let relay = Arc::clone(self);
        let task = tokio::spawn(async move {
            let wake = ShardWake(wake);
            let relay = &relay;
            relay_loop(&relay.core.config, &wake, shutdown, move || async move {
                // A shard that no longer exists (resharded) is given up at the next renewal.
                Ok(relay
                    .relay_shard(index)
                    .await?
                    .unwrap_or(super::Relayed::NOTHING))
            })
            .await;
        });
        Worker { stop, task }
    }
}

/// Stops the workers (an unfinished transaction rolls back: its batch is sent again).
async fn stop(workers: BTreeMap<u32, Worker>) {
    for worker in workers.values() {
        worker.stop.trigger();
    }
    for (_, worker) in workers {
        let _ = worker.task.await;
    }
}

/// Wakes the loops of the shards whose keys committed.
async fn route_wakeups(signal: Arc<dyn OutboxSignal>, routes: Arc<Mutex<Routes>>) {
    loop {
        let committed = signal.committed().await;
        let routing = routes.lock().unwrap_or_else(PoisonError::into_inner);
        for (&index, wake) in &routing.wakes {
            let shard = Shard {
                index,
                count: routing.count,
            };
            if committed.concerns(shard) {
                wake.notify_one();
            }
        }
    }
}
