//! Every SQL statement the workers run, grouped by the tables they touch. Query functions take a
//! connection (usually a transaction's), so callers decide what shares one transaction.
//!
//! Deadlines are always compared with Postgres' `now()`, the transaction's start time, never with the
//! worker's clock: every process then agrees on whether a hold or an admission window has lapsed.

pub(crate) mod dates;
pub(crate) mod outbox;
pub(crate) mod payments;
pub(crate) mod queue;
pub(crate) mod refunds;
pub(crate) mod requests;
pub(crate) mod retention;
pub(crate) mod seats;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The transaction's time (`now()`), which every deadline in the transaction is measured against.
pub(crate) async fn transaction_time(conn: &mut PgConnection) -> anyhow::Result<DateTime<Utc>> {
    sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(conn)
        .await
        .context("reading the transaction time")
}
