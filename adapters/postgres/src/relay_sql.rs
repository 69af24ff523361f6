//! The statements of the outbox's shards (migration `relay_shards`, ADR 0028), per schema.

/// The statements of one schema's shards.
#[derive(Debug)]
pub(crate) struct RelaySql {
    /// Rows of a shard's index and the shard count once its right is held (NULL while another
    /// relay holds it): for the indexes in `$1` (`lock_only`), or every shard (`lock_every`).
    /// One statement takes all the rights a transaction wants.
    pub(crate) lock_only: &'static str,
    pub(crate) lock_every: &'static str,
    pub(crate) count: &'static str,
    /// Every shard with its lease (`list`), and the same with every shard's row locked, so that
    /// renewals run one after the other (`leases`).
    pub(crate) list: &'static str,
    pub(crate) reshard: &'static str,
    pub(crate) alive: &'static str,
    /// Taken (and given up) on an instance's own connection: while it holds it, the instance
    /// counts as connected (`relay_instance_connected`).
    pub(crate) connected: &'static str,
    pub(crate) disconnected: &'static str,
    pub(crate) leases: &'static str,
    pub(crate) hold: &'static str,
    pub(crate) release: &'static str,
    pub(crate) release_all: &'static str,
    pub(crate) gone: &'static str,
}

macro_rules! relay_sql {
    ($schema:literal) => {
        RelaySql {
            lock_only: concat!(
                "SELECT s, ",
                $schema,
                ".lock_relay_shard(s) FROM unnest($1::integer[]) s"
            ),
            lock_every: concat!(
                "SELECT s, ",
                $schema,
                ".lock_relay_shard(s) FROM generate_series(0, (SELECT count(*)::integer FROM ",
                $schema,
                ".relay_shards) - 1) s"
            ),
            count: concat!("SELECT count(*) FROM ", $schema, ".relay_shards"),
            // Live: not expired, and its instance still connected.
            list: concat!(
                "SELECT shard, owner, leased_until, coalesce(leased_until > now() AND ",
                $schema,
                ".relay_instance_connected(owner), false) FROM ",
                $schema,
                ".relay_shards ORDER BY shard"
            ),
            reshard: concat!("SELECT ", $schema, ".reshard_outbox($1)"),
            // Says `$1` is alive for `$2` seconds (instances gone for an hour are forgotten),
            // and returns the other instances alive now: seen lately, and connected.
            alive: concat!(
                "WITH me AS (INSERT INTO ",
                $schema,
                ".relay_instances (owner, seen_until) ",
                "VALUES ($1, now() + make_interval(secs => $2)) ",
                "ON CONFLICT (owner) DO UPDATE SET seen_until = EXCLUDED.seen_until), ",
                "forgotten AS (DELETE FROM ",
                $schema,
                ".relay_instances ",
                "WHERE seen_until < now() - interval '1 hour' AND owner <> $1) ",
                "SELECT owner FROM ",
                $schema,
                ".relay_instances WHERE seen_until > now() AND owner <> $1 AND ",
                $schema,
                ".relay_instance_connected(owner)"
            ),
            connected: concat!(
                "SELECT pg_advisory_lock(hashtext('",
                $schema,
                ".relay-instance'), hashtext($1))"
            ),
            disconnected: concat!(
                "SELECT pg_advisory_unlock(hashtext('",
                $schema,
                ".relay-instance'), hashtext($1))"
            ),
            leases: concat!(
                "SELECT shard, owner, leased_until, coalesce(leased_until > now() AND ",
                $schema,
                ".relay_instance_connected(owner), false) FROM ",
                $schema,
                ".relay_shards ORDER BY shard FOR UPDATE"
            ),
            hold: concat!(
                "UPDATE ",
                $schema,
                ".relay_shards SET owner = $1, ",
                "leased_until = now() + make_interval(secs => $2) WHERE shard = ANY($3)"
            ),
            release: concat!(
                "UPDATE ",
                $schema,
                ".relay_shards SET owner = NULL, leased_until = NULL ",
                "WHERE shard = ANY($2) AND owner = $1"
            ),
            release_all: concat!(
                "UPDATE ",
                $schema,
                ".relay_shards SET owner = NULL, leased_until = NULL WHERE owner = $1"
            ),
            gone: concat!("DELETE FROM ", $schema, ".relay_instances WHERE owner = $1"),
        }
    };
}
pub(crate) use relay_sql;
