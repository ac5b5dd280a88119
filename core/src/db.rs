//! Connecting to Postgres and applying the migrations in `migrations/`.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Settings every session of the service starts with (sent as `options` when connecting, so they hold for
/// every transaction without a `SET` in the code).
///
/// `plan_cache_mode = force_custom_plan`: sqlx prepares every statement, and after five executions
/// PostgreSQL may switch a prepared statement to a generic plan that it then keeps for the life of the
/// connection. A generic plan made while `seats` held a few dozen rows (a nested loop over a sequential
/// scan) stayed in use after a 100,000-seat concert was added, and each batch's seat update then read
/// every seat once per hold: seconds per batch. Table growth does not invalidate a cached plan and,
/// without ANALYZE (autovacuum may be off), nothing else does. A custom plan is made for the actual
/// arrays and the table's current size every time, for a fraction of a millisecond.
///
/// The plan shapes: every statement of the service is driven by keys (a request's ids, a batch's arrays of
/// dates, seats, users), so the right plan is always a nested loop of index probes, whatever the table
/// sizes. Without statistics (autovacuum may be off, and `holds`, `queue_entries` and `requests` fill up
/// within seconds of an on-sale opening) the planner guesses a filter like `completed_at IS NULL` to keep
/// one row in a hundred, and then scans the whole table once per key of the batch: a join batch's
/// live-place lookup took 75 ms over 7,000 places, and grew with the square of the crowd. Sequential and
/// bitmap scans, hash and merge joins are therefore priced out (`enable_* = off` makes them a last
/// resort, not impossible: a statement with no index to use still runs). The planner then picks the
/// index whose columns the keys name; `workers/tests/apply/plans.rs` checks the batch statements'
/// plans on tables the planner knows nothing about. `jit = off`: a priced-out node costs 10^10, far past
/// `jit_above_cost`, and the server then compiled a 200-row read of the waiting rooms for 220 ms; short
/// keyed statements never gain from JIT.
///
/// The limits:
/// - a statement or a lock wait that takes this long fails, and the worker retries its batch (both are
///   [transient](is_transient)): nothing waits forever behind a frozen process;
/// - a session left idle inside a transaction (its process frozen: SIGSTOP, a VM pause, a lost network)
///   is ended by the server after 10 s, which rolls back and releases its row locks, so the new owner of
///   its partitions proceeds;
/// - the server probes idle connections with TCP keepalives and checks during long statements whether
///   the client is still there, so a dead peer's session does not linger for the OS's 2 hours.
pub const SESSION_SETTINGS: [(&str, &str); 13] = [
    ("plan_cache_mode", "force_custom_plan"),
    ("jit", "off"),
    ("enable_seqscan", "off"),
    ("enable_bitmapscan", "off"),
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("statement_timeout", "15s"),
    ("lock_timeout", "5s"),
    ("idle_in_transaction_session_timeout", "10s"),
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
    ("client_connection_check_interval", "5s"),
];

/// How a service connects: the URL plus [`SESSION_SETTINGS`].
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a Postgres URL")?;
    Ok(options.options(SESSION_SETTINGS))
}

/// A pool that connects lazily, so a process starts (and reports not-ready) while the database is down,
/// and reconnects on its own once it is back. Its sessions carry [`SESSION_SETTINGS`].
pub fn pool(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    Ok(lazy_pool(connect_options(url)?, max_connections))
}

/// A pool without [`SESSION_SETTINGS`], for migrations (building an index may take longer than a
/// statement of the service is allowed to).
pub fn admin_pool(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a Postgres URL")?;
    Ok(lazy_pool(options, max_connections))
}

fn lazy_pool(options: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options)
}

/// Applies pending migrations. Run once per deployment (`concert-worker migrate`), not by every replica.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("running migrations")?;
    Ok(())
}

/// Is this error worth retrying (connection lost, pool exhausted, serialisation failure, a statement or
/// lock wait that ran out of time) rather than a verdict on the data?
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // 40001 serialization_failure, 40P01 deadlock, 08* connection, 57P* operator intervention
            // (restart), 53300 too many connections, 55P03 lock_timeout, 57014 statement_timeout,
            // 25P03 idle_in_transaction_session_timeout (this session was frozen and ended).
            let code = db.code().unwrap_or_default();
            matches!(
                code.as_ref(),
                "40001" | "40P01" | "53300" | "55P03" | "57014" | "25P03"
            ) || code.starts_with("08")
                || code.starts_with("57P")
        }
        _ => false,
    }
}

/// The name of the constraint a database error violated, if any.
pub fn violated_constraint(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.constraint().map(str::to_owned),
        _ => None,
    }
}
