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
        loop {
            let claims = cache.take_claims(MAX_CLAIMS_PER_STATEMENT);
            if claims.is_empty() {
                break;
            }
            match db::rooms::write_claims(&pool, &claims).await {
                Ok(written) => {
                    metrics::counter!("queue_claims_written_total").increment(written);
                }
                Err(err) => {
                    tracing::warn!(error = ?err, claims = claims.len(), "writing claims failed; retrying");
                    cache.return_claims(claims);
                    break;
                }
            }
        }
        if stopping {
            return;
        }
    }
}
