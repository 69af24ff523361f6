//! The flags every subcommand shares: where the services listen, which stores and broker they
//! use, how callers are authenticated, and how the saga, relays and retention are tuned.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// How callers are authenticated.
#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Development tokens: sign and verify with the development key (made on first use, kept in
    /// --dev-key-file and shared by every process and `ordership token`). The default of
    /// `ordership all` when no production key is given; never for production.
    #[arg(long, env = "ORDERSHIP_DEV_AUTH", global = true)]
    pub dev_auth: bool,

    /// The development key [default: $XDG_STATE_HOME or ~/.local/state, /ordership/dev-signing-key.pem].
    #[arg(long, env = "ORDERSHIP_DEV_KEY_FILE", global = true)]
    pub dev_key_file: Option<PathBuf>,

    /// Production: the token issuer's public key (PEM: Ed25519, EC P-256/P-384 or RSA).
    #[arg(long, env = "ORDERSHIP_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,

    /// Production: the issuer's JWK Set, from an http(s) URL or a file; fetched again when a
    /// token names a key it does not hold (rotation by `kid`) and every 10 minutes.
    #[arg(long, env = "ORDERSHIP_JWKS_URL", global = true)]
    pub jwks_url: Option<String>,

    /// Production: the `iss` tokens must carry.
    #[arg(long, env = "ORDERSHIP_JWT_ISSUER", global = true)]
    pub jwt_issuer: Option<String>,

    /// The `aud` tokens must carry.
    #[arg(
        long,
        env = "ORDERSHIP_JWT_AUDIENCE",
        default_value = "ordership",
        global = true
    )]
    pub jwt_audience: String,

    /// Web origins allowed to call the API from a browser (CORS), comma-separated; none by default.
    #[arg(
        long,
        env = "ORDERSHIP_CORS_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origin: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// How outbox messages reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayMode {
    Poll,
    Cdc,
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Where the HTTP API listens [default: 127.0.0.1:8080; delivery-service 127.0.0.1:8081].
    #[arg(long, env = "ORDERSHIP_HTTP_ADDR", global = true)]
    pub http_addr: Option<SocketAddr>,

    /// A client must send a request's whole header within this time; a keep-alive connection idle
    /// this long is closed too.
    #[arg(long, env = "ORDERSHIP_HTTP_HEADER_TIMEOUT", value_parser = parse_duration, default_value = "10s", global = true)]
    pub http_header_timeout: Duration,

    #[command(flatten)]
    pub auth: AuthArgs,

    /// PostgreSQL URL; unset: in-memory adapters.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Kafka bootstrap servers; unset: the in-process bus.
    #[arg(long, env = "KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,

    /// Redis for the flash-sale waiting rooms' queue, shared by every order-service instance:
    /// one URL (`redis://127.0.0.1:6379`), or with --redis-cluster the cluster's nodes,
    /// comma-separated. Unset: a queue in this process's memory (one instance only).
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,

    /// --redis-url names Redis Cluster nodes (any of them will do; the rest are discovered).
    #[arg(long, env = "ORDERSHIP_REDIS_CLUSTER", global = true)]
    pub redis_cluster: bool,

    /// Redis over TLS (`rediss://` URLs): the CA (PEM) the servers' certificates are checked
    /// against; unset: the system's roots. The server's name is checked against the URL's host.
    #[arg(long, env = "ORDERSHIP_REDIS_CA_FILE", global = true)]
    pub redis_ca_file: Option<PathBuf>,

    /// Redis over TLS: a client certificate (PEM) for servers that ask for one, with
    /// --redis-client-key.
    #[arg(long, env = "ORDERSHIP_REDIS_CLIENT_CERT", global = true)]
    pub redis_client_cert: Option<PathBuf>,

    /// Redis over TLS: the client certificate's private key (PEM).
    #[arg(long, env = "ORDERSHIP_REDIS_CLIENT_KEY", global = true)]
    pub redis_client_key: Option<PathBuf>,

    /// The Ed25519 private key (PKCS#8 PEM) that signs the waiting rooms' queue and admission
    /// tokens; every order-service instance needs the same one. In development mode the
    /// development key serves.
    #[arg(long, env = "ORDERSHIP_ADMISSION_KEY", global = true)]
    pub admission_key: Option<PathBuf>,

    /// Kafka: put before every topic and consumer-group name, so that several deployments can
    /// share one cluster (`staging.` gives `staging.ordership.order.events`).
    #[arg(
        long,
        env = "ORDERSHIP_KAFKA_NAMESPACE",
        default_value = "",
        hide_default_value = true,
        global = true
    )]
    pub kafka_namespace: String,

    /// Kafka: this instance's stable identity (a StatefulSet pod or compose container name) for
    /// static group membership: restarted within 30 s, it gets its partitions back without a
    /// rebalance. Unique per instance; unset: dynamic membership.
    #[arg(long, env = "ORDERSHIP_KAFKA_INSTANCE_ID", global = true)]
    pub kafka_instance_id: Option<String>,

    /// Kafka: any other librdkafka setting, as key=value, for every client (repeatable; in the
    /// environment, `;`-separated): TLS (`security.protocol=SSL`, `ssl.ca.location=…`,
    /// `ssl.certificate.location=…`, `ssl.key.location=…`), SASL (`sasl.mechanism=SCRAM-SHA-512`,
    /// `sasl.username=…`, `sasl.password=…`), tunables (`linger.ms=5`). The settings the
    /// delivery guarantees rest on (acks, idempotence, offset storing, group ids) are refused.
    #[arg(
        long = "kafka-config",
        env = "ORDERSHIP_KAFKA_CONFIG",
        value_name = "KEY=VALUE",
        value_delimiter = ';',
        global = true,
        hide_env_values = true
    )]
    pub kafka_config: Vec<String>,

    /// Kafka: partitions of each topic ordership creates at start (through the admin API) when
    /// the cluster does not have it yet; topics that exist are left as they are.
    #[arg(
        long,
        env = "ORDERSHIP_KAFKA_PARTITIONS",
        default_value_t = 4,
        global = true
    )]
    pub kafka_partitions: i32,

    /// How outbox messages reach the broker: `poll` (the relay claims unpublished rows) or `cdc`
    /// (the relay reads the outbox's inserts from PostgreSQL's write-ahead log through a logical
    /// replication slot; rows are deleted in the transaction that wrote them). PostgreSQL only;
    /// `cdc` needs `wal_level=logical`.
    #[arg(long, env = "ORDERSHIP_RELAY_MODE", value_enum, default_value_t = RelayMode::Poll, global = true)]
    pub relay_mode: RelayMode,

    /// Outbox messages a relay claims (or reads from the log) and publishes at once.
    #[arg(
        long,
        env = "ORDERSHIP_RELAY_BATCH_SIZE",
        default_value_t = 256,
        global = true
    )]
    pub relay_batch_size: u32,

    /// The polling relay commits after this many full batches: while the broker takes one batch,
    /// the database marks the one before and claims the next, within one transaction.
    #[arg(
        long,
        env = "ORDERSHIP_RELAY_BATCHES_PER_TRANSACTION",
        default_value_t = 8,
        global = true
    )]
    pub relay_batches_per_transaction: u32,

    /// The shard count this instance expects of each outbox (an outbox is split into shards by
    /// message key; the instances lease the shards and relay theirs in parallel). Checked
    /// against the database at start: a mismatch is refused. Unset: the database's. `migrate`
    /// with it sets the count; `outbox reshard` changes it.
    #[arg(long, env = "ORDERSHIP_RELAY_SHARDS", global = true)]
    pub relay_shards: Option<u32>,

    /// How long a relay instance's lease on outbox shards lasts (renewed every third of it): the
    /// shards of an instance that died are taken over within about this long.
    #[arg(long, env = "ORDERSHIP_RELAY_LEASE", value_parser = parse_duration, default_value = "6s", global = true)]
    pub relay_lease: Duration,

    /// Log output.
    #[arg(long, env = "ORDERSHIP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Countries the delivery service serves (ISO 3166-1 alpha-2, comma-separated).
    #[arg(
        long,
        env = "ORDERSHIP_SERVED_COUNTRIES",
        value_delimiter = ',',
        default_value = "KR,JP,US,DE,GB,FR",
        global = true
    )]
    pub served_countries: Vec<String>,

    /// Deliveries per country and day; unset: unlimited.
    #[arg(long, env = "ORDERSHIP_DAILY_CAPACITY", global = true)]
    pub daily_capacity: Option<u32>,

    /// How long the saga waits for the delivery service before sending again.
    #[arg(long, env = "ORDERSHIP_REPLY_TIMEOUT", value_parser = parse_duration, default_value = "10s", global = true)]
    pub reply_timeout: Duration,

    /// `ScheduleDelivery` sends before the saga compensates.
    #[arg(
        long,
        env = "ORDERSHIP_MAX_SCHEDULE_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub max_schedule_attempts: u32,

    /// Attempts of a message whose handler keeps failing (a conflict, a broken invariant) before
    /// it is dead-lettered; failures because the database is down do not count.
    #[arg(
        long,
        env = "ORDERSHIP_MAX_HANDLER_ATTEMPTS",
        default_value_t = 10,
        global = true
    )]
    pub max_handler_attempts: u32,

    /// How often overdue sagas are looked for.
    #[arg(long, env = "ORDERSHIP_SWEEP_INTERVAL", value_parser = parse_duration, default_value = "1s", global = true)]
    pub sweep_interval: Duration,

    /// PostgreSQL: connections per service pool.
    #[arg(
        long,
        env = "ORDERSHIP_DB_MAX_CONNECTIONS",
        default_value_t = 16,
        global = true
    )]
    pub db_max_connections: u32,

    /// PostgreSQL: server-side limit per statement.
    #[arg(long, env = "ORDERSHIP_DB_STATEMENT_TIMEOUT", value_parser = parse_duration, default_value = "5s", global = true)]
    pub db_statement_timeout: Duration,

    /// How long published outbox messages are kept.
    #[arg(long, env = "ORDERSHIP_OUTBOX_RETENTION", value_parser = parse_duration, default_value = "1h", global = true)]
    pub outbox_retention: Duration,

    /// How long inbox entries (message ids already handled) are kept.
    #[arg(long, env = "ORDERSHIP_INBOX_RETENTION", value_parser = parse_duration, default_value = "7d", global = true)]
    pub inbox_retention: Duration,

    /// How long idempotency keys are kept (at least 24 hours is advised).
    #[arg(long, env = "ORDERSHIP_IDEMPOTENCY_RETENTION", value_parser = parse_duration, default_value = "24h", global = true)]
    pub idempotency_retention: Duration,

    /// How often the retention job purges what is past its retention.
    #[arg(long, env = "ORDERSHIP_RETENTION_INTERVAL", value_parser = parse_duration, default_value = "1m", global = true)]
    pub retention_interval: Duration,

    /// How often each outbox is vacuumed, so the relay's claim costs what is waiting, not what
    /// was published before (whether or not PostgreSQL's autovacuum runs); 0: never.
    #[arg(long, env = "ORDERSHIP_OUTBOX_VACUUM_INTERVAL", value_parser = parse_duration, default_value = "5s", global = true)]
    pub outbox_vacuum_interval: Duration,

    /// How many readers may follow orders at once on this instance (event streams, long polls):
    /// beyond it, 503.
    #[arg(
        long,
        env = "ORDERSHIP_MAX_ORDER_FOLLOWERS",
        default_value_t = 10_000,
        global = true
    )]
    pub max_order_followers: usize,

    /// How many waiting-room event streams one instance keeps open at once (apart from the
    /// orders' streams): beyond it, 503 (buyers can still poll their entry).
    #[arg(
        long,
        env = "ORDERSHIP_MAX_ROOM_STREAMS",
        default_value_t = 10_000,
        global = true
    )]
    pub max_room_streams: usize,

    /// How many orders one customer may follow at once (event streams, long polls): beyond it,
    /// 429.
    #[arg(
        long,
        env = "ORDERSHIP_MAX_ORDER_FOLLOWERS_PER_CUSTOMER",
        default_value_t = 64,
        global = true
    )]
    pub max_order_followers_per_customer: usize,

    /// How many Redis replicas an admission must be on before its buyer is told (`WAIT`), so a
    /// master that dies before replicating it cannot let a second set of buyers in within the
    /// room's interval. Default: 1 with --redis-cluster (a cluster's masters have replicas to
    /// fail over to), 0 for a standalone Redis; 0 tells admissions at once.
    #[arg(long, env = "ORDERSHIP_REDIS_ADMISSION_REPLICAS", global = true)]
    pub redis_admission_replicas: Option<u32>,

    /// How long the queue of a closed or deleted waiting room is kept (in Redis) before it
    /// expires.
    #[arg(long, env = "ORDERSHIP_WAITING_ROOM_KEY_TTL", value_parser = parse_duration, default_value = "1d", global = true)]
    pub waiting_room_key_ttl: Duration,

    /// Per-customer quota on placing orders, `N/WINDOW` (e.g. `20/1m`: a token bucket of 20
    /// refilled over a minute); beyond it, 429. Shared by every instance through Redis when
    /// --redis-url is set. Off unless set.
    #[arg(long, env = "ORDERSHIP_ORDER_RATE_LIMIT", value_parser = parse_quota, global = true)]
    pub order_rate_limit: Option<(u32, Duration)>,

    /// Per-customer quota on joining waiting rooms, `N/WINDOW`, as --order-rate-limit.
    #[arg(long, env = "ORDERSHIP_JOIN_RATE_LIMIT", value_parser = parse_quota, global = true)]
    pub join_rate_limit: Option<(u32, Duration)>,

    /// Per-source-address quota on joining waiting rooms, `N/WINDOW`, whichever customers the
    /// address joins as. Off unless set.
    #[arg(long, env = "ORDERSHIP_JOIN_RATE_LIMIT_PER_ADDRESS", value_parser = parse_quota, global = true)]
    pub join_rate_limit_per_address: Option<(u32, Duration)>,

    /// Take a request's source address from the last `X-Forwarded-For` entry (set by the proxy in
    /// front of the service) instead of the connection. Only behind such a proxy.
    #[arg(long, env = "ORDERSHIP_TRUST_FORWARDED_FOR", global = true)]
    pub trust_forwarded_for: bool,

    /// Shed load: refuse new orders (503) while the order outbox holds more messages than this.
    #[arg(long, env = "ORDERSHIP_SHED_OUTBOX_BACKLOG", global = true)]
    pub shed_outbox_backlog: Option<u64>,

    /// Shed load: refuse new orders (503) while the order service's consumers lag by more
    /// messages than this (Kafka only; every partition summed).
    #[arg(long, env = "ORDERSHIP_SHED_CONSUMER_LAG", global = true)]
    pub shed_consumer_lag: Option<u64>,

    /// UNSAFE, for the mutation test only: consumers store offsets before handling.
    #[arg(
        long,
        env = "ORDERSHIP_UNSAFE_STORE_OFFSET_BEFORE_COMMIT",
        hide = true,
        global = true
    )]
    pub unsafe_store_offset_before_commit: bool,

    /// In-process bus only: chance (0–1) that a message is delivered twice, to watch the inbox work.
    #[arg(
        long,
        env = "ORDERSHIP_REDELIVERY_PROBABILITY",
        default_value_t = 0.0,
        global = true
    )]
    pub redelivery_probability: f64,
}

/// Parses a quota, `N/WINDOW` (`20/1m`, `5/10s`).
///
/// # Errors
/// A message for anything else.
pub(crate) fn parse_quota(s: &str) -> Result<(u32, Duration), String> {
    let (n, window) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a quota like 20/1m"))?;
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?}: the count is a positive number"))?;
    Ok((n, parse_duration(window)?))
}

/// Parses a duration the way people write one (`humantime`: `250ms`, `10s`, `5m`, `1h`, `7d`,
/// `1h 30m`), or a bare number of seconds.
///
/// # Errors
/// A message for anything else.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(seconds) = s.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 250ms, 10s, 5m or 1h: {e}"))
}
