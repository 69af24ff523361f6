//! Command line: subcommands and flags; every flag can also come from its environment variable.

mod common;

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use common::{AuthArgs, CommonArgs, LogFormat, RelayMode, parse_duration};

#[derive(Debug, Parser)]
#[command(
    name = "ordership",
    version,
    about = "Orders and deliveries kept consistent by a saga, a transactional outbox and idempotent consumers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Both services, their relays and the saga in one process (the default).
    All,
    /// The order API, the saga, its relay and consumers.
    OrderService,
    /// The delivery API, its relay and consumers.
    DeliveryService,
    /// Apply the schema migrations of both services and exit (needs --database-url); with
    /// --relay-shards, give both outboxes that many shards.
    Migrate {
        /// Instead, revert the migrations above this version (0: all of them).
        #[arg(long)]
        undo_to: Option<i64>,
    },
    /// A Kafka-protocol broker for development and tests (librdkafka's mock cluster).
    /// SIGUSR1 takes its broker down, SIGUSR2 brings it back.
    DevBroker {
        #[arg(long, env = "ORDERSHIP_DEV_BROKER_PORT", default_value_t = 19092)]
        port: u16,
        /// Partitions of every topic.
        #[arg(long, default_value_t = 4)]
        partitions: i32,
    },
    /// Load generator: places orders against a running deployment and waits for each to settle.
    Load(LoadArgs),
    /// Mint a development token (signed with the development key; see --dev-auth) and print it.
    Token(TokenArgs),
    /// The broker's limit for a relay (scripts/bench/relay_drain.sh): publishes `messages`
    /// outbox-like messages with the relays' producer settings as fast as it can, in batches,
    /// and prints the rate as JSON (needs --kafka-brokers).
    #[command(hide = true)]
    BenchPublish {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        /// Distinct message keys (orders).
        #[arg(long, default_value_t = 1_000)]
        keys: usize,
        /// Bytes of each message's payload.
        #[arg(long, default_value_t = 300)]
        payload_bytes: usize,
        /// Messages handed to the publisher at once.
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
    },
    /// For the relay benchmarks (scripts/bench/relay_drain.sh): reads `topic`s from their start
    /// until `messages` messages came and checks each key's came in the order written (payload
    /// `n` rising); prints the tally as JSON, and fails if one came out of order (needs
    /// --kafka-brokers).
    #[command(hide = true)]
    BenchCheckOrder {
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        #[arg(long)]
        messages: usize,
        #[arg(long, value_parser = parse_duration, default_value = "120s")]
        patience: Duration,
    },
    /// Parked outbox messages (refused by the broker for good): list them, send them again once
    /// the cause is fixed, or give up on them; and the outbox's shards (needs --database-url).
    Outbox {
        /// Whose outbox.
        #[arg(long, value_enum, default_value = "order")]
        service: ServiceName,
        #[command(subcommand)]
        action: OutboxAction,
    },
    /// Dead letters (messages a consumer gave up on): list them, show one, send them back to
    /// their topics once the cause is fixed, or give up on them (needs --database-url).
    Dlq {
        /// Whose consumers' dead letters.
        #[arg(long, value_enum, default_value = "order")]
        service: ServiceName,
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Fulfilment sagas, for operators: list them, show one's history, retry a failed one, force
    /// one to compensate (needs --database-url; the same as `/sagas` over HTTP).
    Saga {
        #[command(subcommand)]
        action: SagaCommand,
    },
    /// Waiting rooms, for operators (needs --database-url, and --redis-url where the queue is
    /// in Redis; the same as `/waiting-rooms` over HTTP).
    Room {
        #[command(subcommand)]
        action: RoomCommand,
    },
    /// The deterministic simulator: both services on in-memory adapters under faults chosen by
    /// a seed, checked by an oracle. `--seed S` replays one run exactly (its trace hash is the
    /// same on every machine); `--runs N` or `--duration D` runs fresh seeds.
    Simulate(SimulateArgs),
}

/// `ordership simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Replay this seed (one run), or with --runs/--duration, the first seed of the batch.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Runs of a batch (seeds from --seed, else from the clock).
    #[arg(long)]
    pub runs: Option<u64>,
    /// Run a batch for this long (with --runs: whichever ends first).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Orders each run's clients place.
    #[arg(long, default_value_t = 50)]
    pub orders: usize,
    /// No faults: only the schedule's interleavings.
    #[arg(long)]
    pub no_faults: bool,
    /// No flash sale: every client orders an ungated SKU (the schedules of runs before the sale
    /// joined them).
    #[arg(long)]
    pub no_sale: bool,
    /// Print the run's steps and faults (one run).
    #[arg(long)]
    pub trace: bool,
    /// Plant a known bug (builds with the feature planted-bugs): offset-before-effect,
    /// inbox-skipped, mark-before-ack, stale-reply, compensation-twice.
    #[arg(long)]
    pub bug: Option<String>,
    /// Threads of a batch (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What to do with a waiting room.
#[derive(Debug, Clone, Subcommand)]
pub enum RoomCommand {
    /// Deletes a room and its stock; its queue expires after --waiting-room-key-ttl. Orders
    /// placed through it keep their admissions.
    Delete {
        /// The room's id.
        room: String,
    },
}

/// What to do with dead letters.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqAction {
    /// Lists dead letters, oldest first (one JSON object a line: id, consumer, message id, topic,
    /// key, type, reason, attempts, when).
    List {
        /// Only this consumer group's.
        #[arg(long)]
        consumer: Option<String>,
        /// Also those already re-driven.
        #[arg(long)]
        all: bool,
        /// Start after this id.
        #[arg(long)]
        after: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Shows one dead letter with its whole message (payload and headers), as JSON.
    Show { id: i64 },
    /// Sends dead letters back to their topics (through the outbox: same id, key and headers, in
    /// the order they died); the consumer's inbox discards any it handled meanwhile.
    Redrive {
        #[command(flatten)]
        which: DlqSelection,
    },
    /// Deletes dead letters.
    Purge {
        #[command(flatten)]
        which: DlqSelection,
    },
}

/// Which dead letters: by id, by when they died, or all (of one consumer, if given).
#[derive(Debug, Clone, Args)]
pub struct DlqSelection {
    /// These ids.
    #[arg(long = "id", num_args = 1.., conflicts_with_all = ["since", "until", "all"])]
    pub ids: Vec<i64>,
    /// Those that died at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Those that died before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Every dead letter.
    #[arg(long)]
    pub all: bool,
    /// Only this consumer group's.
    #[arg(long)]
    pub consumer: Option<String>,
}

/// What to do with sagas.
#[derive(Debug, Clone, Subcommand)]
pub enum SagaCommand {
    /// Lists sagas by order id (one JSON object a line), oldest first.
    List {
        /// Only sagas in this state: awaiting_delivery, cancelling, completed, compensated, failed.
        #[arg(long)]
        state: Option<String>,
        /// Only sagas whose last step is older than this (`15m`, `2h`, `1d`).
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<Duration>,
        /// Start after this order id (the last one of the previous page).
        #[arg(long)]
        after: Option<uuid::Uuid>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Shows an order, its saga and every step of its history (JSON).
    Show { order_id: uuid::Uuid },
    /// Retries a failed saga: sends its last command (`CancelDelivery`) again.
    Retry {
        order_id: uuid::Uuid,
        #[command(flatten)]
        why: OperatorArgs,
    },
    /// Forces a saga to compensate: cancels the order and undoes its delivery.
    Compensate {
        order_id: uuid::Uuid,
        #[command(flatten)]
        why: OperatorArgs,
    },
}

/// Who acts on a saga, and why (both recorded in its history).
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    #[arg(long, env = "USER")]
    pub actor: String,
    #[arg(long)]
    pub reason: String,
}

/// A service, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceName {
    Order,
    Delivery,
}

/// How the load generator follows an order to its terminal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Follow {
    /// The server answers once the order settled (`Prefer: wait`).
    Wait,
    /// The generator reads the order again until it settled.
    Poll,
}

/// What to do with parked outbox messages.
#[derive(Debug, Clone, Subcommand)]
pub enum OutboxAction {
    /// Lists parked messages (one JSON object a line: position, id, topic, key, type, reason).
    Parked {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Sends these parked messages again (by position), before the later messages of their keys.
    Redrive { positions: Vec<i64> },
    /// Deletes these parked messages (by position); the later messages of their keys flow on.
    Purge { positions: Vec<i64> },
    /// Lists the outbox's shards with the relay instance leasing each (one JSON object a line).
    Shards,
    /// Changes the outbox's shard count, online: it waits until no relay is publishing, then
    /// relays go on by the new count, every key's waiting messages still in order. Give the
    /// services the new --relay-shards before they restart.
    Reshard {
        #[arg(long)]
        shards: u32,
    },
}

/// What `ordership token` mints.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The token's subject: for a customer (scope orders), the customer id their orders carry.
    #[arg(long, visible_alias = "subject", default_value = "c-42")]
    pub customer: String,
    /// Scopes, space- or comma-separated: orders, courier, admin.
    #[arg(long, default_value = "orders")]
    pub scope: String,
    /// How long the token is valid.
    #[arg(long, value_parser = parse_duration, default_value = "12h")]
    pub ttl: Duration,
    /// Mint this many, one a line, for subjects `<customer>-0`, `<customer>-1`, … (load tests).
    #[arg(long)]
    pub count: Option<usize>,
}

/// What `ordership load` does.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Base URL of the order API (with --flash-sale: several, comma-separated, buyers spread
    /// over them).
    #[arg(
        long,
        env = "ORDERSHIP_LOAD_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: String,
    /// Orders to place.
    #[arg(long, default_value_t = 1000)]
    pub orders: usize,
    /// Place orders for this long instead of a number of them (a soak): `--orders` is ignored.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Report sagas/s and POST→terminal percentiles for every interval this long, besides the
    /// whole run's (how throughput holds up over a long run).
    #[arg(long, value_parser = parse_duration)]
    pub report_every: Option<Duration>,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Share of orders sent to a country that is not served (they end cancelled).
    #[arg(long, default_value_t = 0.2)]
    pub unserved_ratio: f64,
    /// Only place the orders; do not wait for them to settle (measures POST /orders alone).
    #[arg(long)]
    pub no_wait: bool,
    /// Give up on an order that has not settled this long after it was placed.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub deadline: Duration,
    /// How an order is followed to its terminal state: `wait` asks the server to answer once it
    /// settled (`Prefer: wait` on the POST, then long polls); `poll` reads it again and again.
    /// With --flash-sale: `wait` follows each buyer's place on its event stream, `poll` polls it.
    #[arg(long, value_enum, default_value_t = Follow::Wait)]
    pub follow: Follow,
    /// With `--follow wait`: how long one request may wait for the order to settle (at most 30 s).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub wait: Duration,
    /// With `--follow poll`: how soon an order in flight is first polled (then every 1.5x longer,
    /// up to 50 ms).
    #[arg(long, value_parser = parse_duration, default_value = "10ms")]
    pub poll_interval: Duration,
    /// A request without a whole answer after this long (plus the wait it asked for) counts as failed.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub request_timeout: Duration,
    /// How often a failed POST (no answer, timeout, 5xx) is sent again, with the same
    /// Idempotency-Key, so a retry never places a second order.
    #[arg(long, default_value_t = 3)]
    pub post_retries: u32,
    /// When no order settles for this long, stop placing, wait for what is in flight (at most as
    /// long again), report, and exit non-zero.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub stall_limit: Duration,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Run a flash sale instead: buyers join this waiting room at once, wait for their
    /// admission, and order its product with it (development tokens, one customer per buyer).
    #[arg(long, value_name = "ROOM")]
    pub flash_sale: Option<String>,
    /// Buyers of the flash sale.
    #[arg(long, default_value_t = 1000)]
    pub buyers: usize,
    /// With --flash-sale: the share of buyers who cancel the order they placed (its units go
    /// back on sale).
    #[arg(long, default_value_t = 0.0)]
    pub cancel_ratio: f64,
    /// With --flash-sale: how long a buyer told "sold out" keeps waiting for units that
    /// cancelled orders give back, before leaving the room.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub patience: Duration,
    /// With --flash-sale: each buyer joins once and stops there (measures joins per second).
    #[arg(long)]
    pub join_only: bool,
    /// A customer's bearer token to place every order with. Unset: each load customer gets a
    /// development token, signed with the development key (the target must run --dev-auth).
    #[arg(long, env = "ORDERSHIP_LOAD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5h"), Ok(Duration::from_secs(5 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn no_subcommand_means_all_with_the_documented_defaults() {
        let cli = Cli::try_parse_from(["ordership"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.common.http_addr, None);
        assert_eq!(cli.common.served_countries.len(), 6);
    }

    #[test]
    fn flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["ordership", "all", "--http-addr", "127.0.0.1:0"])
            .expect("parses");
        assert!(matches!(cli.command, Some(Command::All)));
        assert_eq!(cli.common.http_addr.map(|a| a.port()), Some(0));
    }
}
