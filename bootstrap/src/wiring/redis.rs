//! Redis, as the flags describe it: the waiting rooms' queue and the per-customer quotas every
//! order-service instance shares.

use anyhow::Context as _;
use ordership_redis::{Durability, Redis};

use crate::cli::CommonArgs;

/// The Redis (or Redis Cluster) at --redis-url; `None` without one (the queue and the quotas then
/// live in this process's memory).
pub(crate) async fn connect(args: &CommonArgs) -> anyhow::Result<Option<Redis>> {
    let Some(url) = &args.redis_url else {
        return Ok(None);
    };
    let tls = ordership_redis::Tls {
        ca: args.redis_ca_file.clone(),
        client_certificate: match (&args.redis_client_cert, &args.redis_client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => anyhow::bail!("--redis-client-cert and --redis-client-key go together"),
        },
    };
    if args.redis_cluster {
        let nodes: Vec<String> = url
            .split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        let durability = Durability::on(args.redis_admission_replicas.unwrap_or(1));
        let redis = ordership_redis::connect_cluster(&nodes, &tls, durability)
            .await
            .with_context(|| format!("connecting to the Redis Cluster at {nodes:?}"))?;
        tracing::info!(nodes = ?nodes, "waiting rooms and quotas: Redis Cluster");
        return Ok(Some(redis));
    }
    let durability = Durability::on(args.redis_admission_replicas.unwrap_or(0));
    let redis = ordership_redis::connect(url, &tls, durability).context("--redis-url")?;
    // Lazily connected: a Redis that is down now is reported by readiness, and joins answer 503
    // until it is back.
    if let Err(e) = redis.queue.ping().await {
        tracing::warn!(error = %e, "Redis does not answer yet; waiting rooms refuse joins until it does");
    }
    tracing::info!("waiting rooms and quotas: Redis");
    Ok(Some(redis))
}
