//! The claim writer: the first use of a queue token inside its claim window is counted in memory (see
//! `RoomCache::status_claiming`), and this loop writes those claims to Postgres in batches, so the hot path
//! never writes.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::db;
use crate::db::rooms::MAX_CLAIMS_PER_STATEMENT;
use crate::rooms::cache::RoomCache;

/// Writes the claims seen since the last beat, every `every` until shutdown (and once more at shutdown), in
/// statements of at most [`MAX_CLAIMS_PER_STATEMENT`]. A failed write keeps its claims for the next beat
/// and ends the beat: whatever piles up meanwhile is written a bounded statement at a time, never as one
/// statement that grows with every failure.
pub async fn run_claim_writer(
    cache: std::sync::Arc<RoomCache>,
    pool: PgPool,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = shutdown.changed() => true,
        };
        write_claims(&cache, &pool).await;
        if stopping {
            return;
        }
    }
}

/// Writes the claims seen so far, a bounded statement at a time; `false` if a write failed (its claims are
/// kept for the next try). The api calls it once more after its connections drained at shutdown: requests
/// answered during the drain claim places too.
pub async fn write_claims(cache: &RoomCache, pool: &PgPool) -> bool {
    loop {
        let claims = cache.take_claims(MAX_CLAIMS_PER_STATEMENT);
        if claims.is_empty() {
            return true;
        }
        match db::rooms::write_claims(pool, &claims).await {
            Ok(written) => {
                metrics::counter!("queue_claims_written_total").increment(written);
            }
            Err(err) => {
                tracing::warn!(error = ?err, claims = claims.len(), "writing claims failed; retrying");
                cache.return_claims(claims);
                return false;
            }
        }
    }
}
