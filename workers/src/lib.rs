//! The booking service's workers: the command consumer, the admission ticker, the hold sweeper, the
//! outbox relay and the retention, each a role that any number of processes may run at once.
//!
//! - [`run`] runs the roles named in [`WorkerConfig::roles`] until shutdown is signalled.
//! - [`apply_batch`] is the consumer's core without Kafka: it applies one partition's commands, in log
//!   order, in one Postgres transaction, and returns one [`Reply`](concert_core::commands::Reply) per
//!   command. Tests drive it directly:
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool, envelope: concert_core::commands::CommandEnvelope) -> anyhow::Result<()> {
//! use concert_workers::{apply_batch, ApplyContext, LogCommand};
//! let ctx = ApplyContext::new(pool, 4);
//! let replies = apply_batch(&ctx, &[LogCommand { partition: 0, offset: 0, envelope }]).await?;
//! # Ok(()) }
//! ```
//!
//! Delivering the same command again (same request id) changes nothing and returns the same reply.

mod apply;
mod backoff;
mod config;
mod consumer;
mod metrics;
mod relay;
mod retention;
mod store;
mod sweeper;
mod ticker;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use apply::{apply_batch, ApplyContext, LogCommand, ShuttingDown};
pub use config::{Roles, WorkerConfig};
pub use retention::{prune_once, Pruned, Retention};

/// Runs the enabled roles until `*shutdown.borrow()` becomes true, then stops them cleanly: the consumer
/// finishes the batch in flight and commits its offsets synchronously.
///
/// Returns an error when a role cannot start (e.g. a malformed setting) or fails for good; the other roles
/// are then stopped too. Outages of Postgres or the broker are not errors: every role logs, backs off and
/// carries on.
pub async fn run(config: WorkerConfig, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let settings = &config.settings;
    let pool = concert_core::db::pool(&settings.database_url, settings.db_max_connections)?;
    let topics = settings.topics();
    let roles = config.roles;
    let producer = if roles.consumer || roles.relay {
        Some(concert_core::kafka::producer(&settings.kafka_brokers)?)
    } else {
        None
    };

    // The roles listen to an inner signal, so that one role failing for good stops the others too.
    let (stop, stop_rx) = watch::channel(false);
    let stop_on_outer = stop.clone();
    let mut outer = shutdown;
    let forward = tokio::spawn(async move {
        backoff::stopped(&mut outer).await;
        let _ = stop_on_outer.send(true);
    });

    let mut roles_running: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    if config.metrics_port != 0 {
        let (port, rx) = (config.metrics_port, stop_rx.clone());
        roles_running.spawn(async move { ("metrics", metrics::serve(port, rx).await) });
    }
    if let Some(producer) = producer.clone().filter(|_| roles.consumer) {
        let (config, pool, rx) = (config.clone(), pool.clone(), stop_rx.clone());
        roles_running
            .spawn(async move { ("consumer", consumer::run(&config, pool, producer, rx).await) });
    }
    if roles.ticker {
        let (pool, tick, rx) = (pool.clone(), config.admission_tick, stop_rx.clone());
        roles_running.spawn(async move { ("ticker", ticker::run(pool, tick, rx).await) });
    }
    if roles.sweeper {
        let (pool, interval, rx) = (pool.clone(), config.sweep_interval, stop_rx.clone());
        roles_running.spawn(async move { ("sweeper", sweeper::run(pool, interval, rx).await) });
    }
    if let Some(producer) = producer.filter(|_| roles.relay) {
        let (pool, topics, interval, rx) = (
            pool.clone(),
            topics.clone(),
            config.relay_interval,
            stop_rx.clone(),
        );
        roles_running.spawn(async move {
            (
                "relay",
                relay::run(pool, producer, topics, interval, rx).await,
            )
        });
    }

    if roles.retention {
        let (pool, retention, rx) = (pool.clone(), config.retention, stop_rx.clone());
        roles_running
            .spawn(async move { ("retention", retention::run(pool, retention, rx).await) });
    }

    let mut failure: Option<anyhow::Error> = None;
    while let Some(joined) = roles_running.join_next().await {
        let (role, result) = joined.context("a worker role panicked")?;
        if let Err(err) = result {
            tracing::error!(
                role,
                error = format!("{err:#}"),
                "worker role failed; stopping the others"
            );
            let _ = stop.send(true);
            failure.get_or_insert(err.context(format!("the {role} role failed")));
        }
    }
    forward.abort();
    pool.close().await;
    failure.map_or(Ok(()), Err)
}
