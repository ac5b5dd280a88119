//! The retention role: deletes, in small batches, what nobody needs any more, so that tables (and the
//! api's start-up read) stop growing with every on-sale.
//!
//! - Decided `requests` and the `idempotency_keys` / `charge_keys` older than the retention (at least
//!   24 hours: the contract keeps idempotency keys that long). The retention must also be longer than the
//!   command topics keep their records: a command read again from the log must still find its request row,
//!   or it would be applied twice (docs/DESIGN.md, "Retention").
//! - Published `outbox` rows older than the retention (unpublished ones always stay).
//! - Places and admission steps: each room's `pruned_upto` moves to the last line whose window closed more
//!   than the retention ago (`store::retention::watermarks_due`); places and steps at or below it go. The
//!   api answers a place below the watermark EXPIRED without holding it.
//! - Used proof-of-work challenges past their expiry.
//!
//! Every statement deletes at most `batch` rows in its own short transaction, and any number of workers
//! may run the role at once (see `store::retention`).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::backoff::{sleep_or_stop, Backoff};
use crate::store::retention as store;

/// How long rows are kept and how the pruning paces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `RETENTION_HOURS`: how long decided requests, keys, published events and ended places are kept.
    pub keep: Duration,
    /// `RETENTION_INTERVAL_MS`: the pause between two rounds.
    pub interval: Duration,
    /// Most rows one statement deletes.
    pub batch: i64,
}

impl Retention {
    /// The contract promises idempotency keys for at least 24 hours.
    pub const MIN_HOURS: u64 = 24;
    pub const DEFAULT_BATCH: i64 = 5_000;
}

/// Rows deleted by one round, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub requests: u64,
    pub idempotency_keys: u64,
    pub charge_keys: u64,
    pub outbox: u64,
    pub queue_entries: u64,
    pub admissions: u64,
    pub queue_proofs_used: u64,
}

impl Pruned {
    pub fn total(&self) -> u64 {
        self.requests
            + self.idempotency_keys
            + self.charge_keys
            + self.outbox
            + self.queue_entries
            + self.admissions
            + self.queue_proofs_used
    }
}

/// Prunes every `retention.interval` until shutdown.
pub(crate) async fn run(
    pool: PgPool,
    retention: Retention,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        let delay = match prune(&pool, &retention, &shutdown).await {
            Ok(pruned) => {
                backoff.reset();
                if pruned.total() > 0 {
                    tracing::info!(?pruned, "retention pruned old rows");
                }
                retention.interval
            }
            Err(err) => {
                let delay = backoff.next_delay().max(retention.interval);
                tracing::warn!(error = format!("{err:#}"), ?delay, "retention round failed");
                delay
            }
        };
        if !sleep_or_stop(delay, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// One round: moves the rooms' watermarks, then deletes batch after batch of each kind of row until a
/// batch comes back short (or shutdown is signalled). Each statement commits on its own.
pub async fn prune_once(pool: &PgPool, retention: &Retention) -> anyhow::Result<Pruned> {
    let (_tx, rx) = watch::channel(false);
    prune(pool, retention, &rx).await
}

async fn prune(
    pool: &PgPool,
    retention: &Retention,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Pruned> {
    let keep = retention.keep.as_secs_f64();
    let batch = retention.batch.max(1);
    let mut conn = pool.acquire().await.context("getting a connection")?;
    for (concert_id, upto) in store::watermarks_due(&mut conn, keep).await? {
        match store::set_watermark(&mut conn, concert_id, upto).await {
            Ok(()) => {}
            // A join batch or admission step held the room for long: next round.
            Err(err) if crate::store::queue::is_lock_timeout(&err) => {
                tracing::debug!(%concert_id, "waiting room busy; watermark moves next round")
            }
            Err(err) => return Err(err),
        }
    }
    let mut pruned = Pruned::default();
    macro_rules! drain {
        ($field:ident, $call:expr) => {
            loop {
                let n: u64 = $call.await?;
                pruned.$field += n;
                if n < batch as u64 || crate::backoff::is_stopping(shutdown) {
                    break;
                }
            }
        };
    }
    drain!(queue_entries, store::delete_places(&mut conn, batch));
    drain!(admissions, store::delete_admissions(&mut conn, batch));
    drain!(requests, store::delete_requests(&mut conn, keep, batch));
    drain!(
        idempotency_keys,
        store::delete_idempotency_keys(&mut conn, keep, batch)
    );
    drain!(
        charge_keys,
        store::delete_charge_keys(&mut conn, keep, batch)
    );
    drain!(
        outbox,
        store::delete_published_events(&mut conn, keep, batch)
    );
    drain!(
        queue_proofs_used,
        store::delete_used_proofs(&mut conn, batch)
    );
    Ok(pruned)
}
