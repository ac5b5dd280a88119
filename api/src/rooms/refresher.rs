//! The loop that keeps the cache current: it refreshes the cache from Postgres on every beat and sets the
//! waiting-room gauges from it.

use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::rooms::cache::RoomCache;

/// Refreshes the cache every `every` until shutdown; failures are logged and retried on the next beat
/// (and `/readyz` turns unready once the cache is stale).
pub async fn run_refresher(
    cache: std::sync::Arc<RoomCache>,
    pool: PgPool,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(err) = cache.refresh(&pool).await {
                    tracing::warn!(error = ?err, "waiting room cache refresh failed");
                }
                let (waiting, active) = cache.totals(Utc::now());
                metrics::gauge!("waiting_room_waiting").set(waiting as f64);
                metrics::gauge!("waiting_room_active").set(active as f64);
            }
            _ = shutdown.changed() => return,
        }
    }
}
