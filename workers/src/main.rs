//! `concert-worker`: applies migrations, creates topics, or runs the worker roles.

use anyhow::Context;
use clap::{Parser, Subcommand};
use concert_core::config::Settings;
use concert_workers::WorkerConfig;
use tokio::sync::watch;

/// mimalloc instead of glibc's malloc: the api's profile under load spent more in glibc's allocator
/// (`_int_malloc`, `malloc_consolidate`, `unlink_chunk`) than in its own code (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "concert-worker",
    about = "Workers of the concert booking service",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Create the Kafka topics if they are missing, then exit.
    Topics,
    /// Run the worker roles until SIGINT or SIGTERM (the default).
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    concert_core::telemetry::init("info,sqlx=warn,rdkafka=warn");
    match Cli::parse().command.unwrap_or(Command::Run) {
        Command::Migrate => {
            let settings = Settings::from_env()?;
            let pool = concert_core::db::admin_pool(&settings.database_url, 2)?;
            concert_core::db::migrate(&pool).await?;
            tracing::info!("migrations applied");
        }
        Command::Topics => {
            let settings = Settings::from_env()?;
            let replication = concert_core::kafka::replication_factor_from_env()?;
            concert_core::kafka::ensure_topics(
                &settings.kafka_brokers,
                &settings.topics(),
                replication,
            )
            .await?;
            tracing::info!(
                replication,
                "topics created with this replication factor if missing"
            );
            tracing::info!("topics ready");
        }
        Command::Run => {
            let config = WorkerConfig::from_env()?;
            let (stop, shutdown) = watch::channel(false);
            tokio::spawn(async move {
                match shutdown_signal().await {
                    Ok(signal) => tracing::info!(signal, "shutting down"),
                    Err(err) => tracing::error!(
                        error = format!("{err:#}"),
                        "cannot listen for signals; shutting down"
                    ),
                }
                let _ = stop.send(true);
            });
            concert_workers::run(config, shutdown).await?;
        }
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map(|()| "SIGINT").context("listening for SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("listening for SIGINT")?;
        Ok("SIGINT")
    }
}
