//! Logging setup: JSON lines when `LOG_FORMAT=json` (production), human-readable otherwise; and the upkeep of
//! the Prometheus recorder every process keeps.

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests call it per test).
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// How often [`drain_histograms`] runs the recorder's upkeep.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Runs the recorder's upkeep every few seconds until shutdown. The exporter keeps every recorded histogram
/// sample until the registry is rendered or upkept, and only its own HTTP listener (which the api and the
/// workers do not use) would do that: without this a process nobody scrapes grows by every sample (the api
/// did, by each request's latencies).
pub async fn drain_histograms(handle: PrometheusHandle, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.changed() => return,
        }
    }
}
