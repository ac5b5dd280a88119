//! `concert-api`: serves the HTTP API until SIGINT or SIGTERM.

use concert_api::{ApiConfig, Application};

/// mimalloc instead of glibc's malloc: the api's profile under load spent more in glibc's allocator
/// (`_int_malloc`, `malloc_consolidate`, `unlink_chunk`) than in its own code (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    concert_core::telemetry::init("info,tower_http=warn,sqlx=warn,rdkafka=warn");
    let config = ApiConfig::from_env()?;
    let app = Application::build(config).await?;
    println!("concert-api listening on http://{}", app.addr());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    app.run_until_stopped(shutdown).await
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
