//! Readiness, checked in the background and served from memory. `/readyz` is public and never limited, so
//! it must cost nothing: were each call to query the database and the broker, a flood of it would take the
//! connections the waiting-room cache needs, the cache would turn stale, and every instance would report
//! unready at once. One check a second on a connection of its own answers every call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concert_core::kafka_stats::Producer;
use rdkafka::producer::Producer as _;
use sqlx::PgPool;
use tokio::sync::watch;

/// How often the database and the broker are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long one check may wait for an answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the last check found.
#[derive(Debug, Default)]
pub struct Readiness {
    database: AtomicBool,
    broker: AtomicBool,
}

impl Readiness {
    pub fn database(&self) -> bool {
        self.database.load(Ordering::Relaxed)
    }

    pub fn broker(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
    }

    /// Checks both now and keeps the answers.
    pub async fn check(&self, pool: &PgPool, producer: &Producer) {
        let database = tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query_scalar!("SELECT 1 AS one").fetch_one(pool),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        let producer = producer.clone();
        let broker = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, CHECK_TIMEOUT)
                .is_ok()
        })
        .await
        .unwrap_or(false);
        self.database.store(database, Ordering::Relaxed);
        self.broker.store(broker, Ordering::Relaxed);
    }
}

/// Checks every [`CHECK_EVERY`] until shutdown.
pub async fn run_checks(
    readiness: Arc<Readiness>,
    pool: PgPool,
    producer: Producer,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => readiness.check(&pool, &producer).await,
            _ = shutdown.changed() => return,
        }
    }
}
