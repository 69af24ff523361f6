//! Connections to Redis, standalone or Cluster, in plain text (`redis://`) or TLS (`rediss://`).
//! Over TLS the server's certificate is checked against the system's roots or, when given, a CA
//! of the deployment's own, and its name against the URL's host; a client certificate may be
//! presented (Redis `tls-auth-clients`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ordership_domain::ports::{QueueError, RateLimiter, WaitingRoomQueue};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{ClientTlsConfig, TlsCertificates};

use crate::healing::{Connect, HEAL_AFTER, Healing};
use crate::rate_limit::RedisRateLimiter;
use crate::replication::{Durability, Replicated};
use crate::waiting_room::{RedisWaitingRoomQueue, failed_in};

/// What one Redis deployment serves, over one connection: the waiting rooms' queue and the
/// buckets of per-caller quotas.
#[derive(Clone)]
pub struct Redis {
    pub queue: Arc<dyn WaitingRoomQueue>,
    pub rate_limiter: Arc<dyn RateLimiter>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").finish_non_exhaustive()
    }
}

impl Redis {
    fn over<C: Replicated>(connection: C, durability: Durability) -> Self {
        Self {
            queue: Arc::new(RedisWaitingRoomQueue::new(connection.clone(), durability)),
            rate_limiter: Arc::new(RedisRateLimiter::new(connection)),
        }
    }
}

/// How long one command may take, and one connection attempt: a queue that does not answer
/// within this is unavailable, and callers answer 503 rather than hang.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The files a TLS connection uses, all in PEM. Unused with `redis://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// The CA that signed the servers' certificates; unset: the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, for servers that ask for one.
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

/// A TLS file that cannot be read, named.
#[derive(Debug, thiserror::Error)]
#[error("Redis TLS: cannot read {what} {path}")]
struct Unreadable {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Tls {
    /// The certificates, read, as the client takes them.
    fn certificates(&self) -> Result<TlsCertificates, QueueError> {
        let read = |what: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|source| {
                QueueError::Unexpected(Box::new(Unreadable {
                    what,
                    path: path.clone(),
                    source,
                }))
            })
        };
        let root_cert = self.ca.as_ref().map(|ca| read("CA file", ca)).transpose()?;
        let client_tls = match &self.client_certificate {
            Some((cert, key)) => Some(ClientTlsConfig {
                client_cert: read("client certificate", cert)?,
                client_key: read("client key", key)?,
            }),
            None => None,
        };
        // rustls needs one process-wide crypto provider; the replication client installs the
        // same one (first come, first served: a second install changes nothing).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

fn unexpected(e: redis::RedisError) -> QueueError {
    QueueError::Unexpected(Box::new(e))
}

/// Connects to a standalone Redis (`redis://host:port`, `rediss://` for TLS): one multiplexed
/// connection, made on first use and made again by itself after Redis went away, so a service
/// starts, and recovers, while Redis is down. Admissions are told once `durability` holds.
///
/// # Errors
/// `Unexpected` for a bad URL or an unreadable TLS file.
pub fn connect(url: &str, tls: &Tls, durability: Durability) -> Result<Redis, QueueError> {
    let client = if url.starts_with("rediss://") {
        redis::Client::build_with_tls(url, tls.certificates()?).map_err(unexpected)?
    } else {
        redis::Client::open(url).map_err(unexpected)?
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1));
    let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(unexpected)?;
    Ok(Redis::over(manager, durability))
}

/// Connects to a Redis Cluster through any of its nodes (`host:port` or URLs; `rediss://` for
/// TLS); the slot map is followed (and refreshed on `MOVED`, on failover) by the client, and a
/// connection that answers only connection errors for [`HEAL_AFTER`] is made again.
/// Admissions are told once `durability` holds (on a replica of their master: a cluster's
/// masters have replicas to fail over to).
///
/// # Errors
/// [`QueueError::Unavailable`] when no node can be reached; `Unexpected` for a bad URL or an
/// unreadable TLS file.
pub async fn connect_cluster(
    nodes: &[String],
    tls: &Tls,
    durability: Durability,
) -> Result<Redis, QueueError> {
    let urls: Vec<String> = nodes
        .iter()
        .map(|node| {
            if node.contains("://") {
                node.clone()
            } else {
                format!("redis://{node}")
            }
        })
        .collect();
    let secure = urls.iter().any(|url| url.starts_with("rediss://"));
    // Retries ride out a failover (MOVED, a master that went away) within a few seconds.
    let mut builder = redis::cluster::ClusterClient::builder(urls)
        .connection_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .retries(8)
        .min_retry_wait(50)
        .max_retry_wait(1_000);
    if secure {
        builder = builder.certs(tls.certificates()?);
    }
    let client = builder.build().map_err(unexpected)?;
    let connection = client
        .get_async_connection()
        .await
        .map_err(failed_in("connecting to the cluster"))?;
    // Made again from the nodes given if it ever answers nothing but connection errors for a
    // while (see `healing`).
    let connect: Connect<ClusterConnection> = Arc::new(move || {
        let client = client.clone();
        Box::pin(async move { client.get_async_connection().await })
    });
    let connection = Healing::new(connection, connect, HEAL_AFTER);
    Ok(Redis::over(connection, durability))
}
