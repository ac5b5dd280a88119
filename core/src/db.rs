//! Connecting to Postgres and applying the migrations in `migrations/`.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Settings every service connection starts with.
///
/// `plan_cache_mode = force_custom_plan`: sqlx prepares every statement, and after five executions
/// PostgreSQL may switch a prepared statement to a generic plan that it then keeps for the life of the
/// connection. A generic plan made while `seats` held a few dozen rows (a nested loop over a sequential
/// scan) stayed in use after a 100,000-seat concert was added, and each batch's seat update then read
/// every seat once per hold: seconds per batch. Table growth does not invalidate a cached plan and,
/// without ANALYZE (autovacuum may be off), nothing else does. A custom plan is made for the actual
/// arrays and the table's current size every time, for a fraction of a millisecond.
pub const SESSION_SETTINGS: [(&str, &str); 1] = [("plan_cache_mode", "force_custom_plan")];

/// How a service connects: the URL plus [`SESSION_SETTINGS`].
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options: PgConnectOptions = url.parse().context("DATABASE_URL is not a Postgres URL")?;
    Ok(options.options(SESSION_SETTINGS))
}

/// A pool that connects lazily, so a process starts (and reports not-ready) while the database is down,
/// and reconnects on its own once it is back.
pub fn pool(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = connect_options(url)?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// Applies pending migrations. Run once per deployment (`concert-worker migrate`), not by every replica.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../migrations")
        .run(pool)
        .await
        .context("running migrations")?;
    Ok(())
}

/// Is this error worth retrying (connection lost, pool exhausted, serialisation failure) rather than a
/// verdict on the data?
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // 40001 serialization_failure, 40P01 deadlock, 08* connection, 57P* operator intervention (restart)
            let code = db.code().unwrap_or_default();
            code == "40001"
                || code == "40P01"
                || code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
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
