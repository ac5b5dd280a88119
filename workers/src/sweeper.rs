//! The hold sweeper: marks lapsed holds EXPIRED and frees their seats.
//!
//! It only tidies: a lapsed hold is already free for the next hold and can no longer be paid, because
//! every command compares deadlines with `now()` itself.

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::backoff::{sleep_or_stop, Backoff};
use crate::metrics;
use crate::store::{queue, seats};

/// Most holds expired in one transaction.
const SWEEP_BATCH: i64 = 1000;

/// Sweeps every `interval` until shutdown.
pub(crate) async fn run(
    pool: PgPool,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        let delay = match sweep(&pool, &shutdown).await {
            Ok(_) => {
                backoff.reset();
                interval
            }
            Err(err) if queue::is_lock_timeout(&err) => {
                tracing::debug!("a seat was busy; sweeping again next round");
                interval
            }
            Err(err) => {
                let delay = backoff.next_delay().max(interval);
                tracing::warn!(error = format!("{err:#}"), ?delay, "sweeping holds failed");
                delay
            }
        };
        if !sleep_or_stop(delay, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// Expires lapsed holds in batches until none are left. Returns how many were expired.
async fn sweep(pool: &PgPool, shutdown: &watch::Receiver<bool>) -> anyhow::Result<u64> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await.context("starting a transaction")?;
        let expired = seats::expire_lapsed_holds(&mut tx, SWEEP_BATCH).await?;
        tx.commit().await.context("committing expired holds")?;
        total += expired;
        metrics::holds_expired(expired);
        if expired < SWEEP_BATCH as u64 || crate::backoff::is_stopping(shutdown) {
            break;
        }
    }
    if total > 0 {
        tracing::debug!(expired = total, "expired lapsed holds");
    }
    Ok(total)
}
