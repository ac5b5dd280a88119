//! The workers' metrics, and the optional `GET /metrics` endpoint that renders them for Prometheus.
//!
//! Recording goes through the `metrics` facade, so it costs nothing when no recorder is installed (tests).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use concert_core::commands::CommandKind;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::backoff::stopped;

const COMMANDS: &str = "concert_worker_commands_total";
const DEAD_LETTERS: &str = "concert_worker_dead_letters_total";
const EVENTS_PUBLISHED: &str = "concert_worker_outbox_published_total";
const ADMITTED: &str = "concert_worker_admitted_total";
const ABANDONED: &str = "concert_worker_abandoned_total";
const HOLDS_EXPIRED: &str = "concert_worker_holds_expired_total";
const LAST_OFFSET: &str = "concert_worker_last_offset";
const BATCH_SIZE: &str = "concert_worker_batch_size";
const BATCH_SECONDS: &str = "concert_worker_batch_apply_seconds";
const BROKER_SKIPS: &str = "concert_worker_broker_skipped_reads_total";
const COMMAND_WAIT: &str = "concert_worker_command_wait_seconds";
const REPLIES_SENT: &str = "concert_worker_reply_send_seconds";

/// A command's outcome: `succeeded`, `failed`, or `replayed` (an earlier delivery had decided it).
pub(crate) fn command_applied(kind: CommandKind, outcome: &'static str) {
    metrics::counter!(COMMANDS, "kind" => kind.as_str(), "outcome" => outcome).increment(1);
}

/// The size and apply time of one partition's batch.
pub(crate) fn batch_applied(size: usize, took: Duration) {
    metrics::histogram!(BATCH_SIZE).record(size as f64);
    metrics::histogram!(BATCH_SECONDS).record(took.as_secs_f64());
}

/// How long each command of a batch waited between the api's send (its log timestamp) and the start of
/// its batch's apply: the broker's hop plus the wait behind the previous batch.
pub(crate) fn commands_waited(sent_at_ms: impl Iterator<Item = i64>) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for sent in sent_at_ms {
        metrics::histogram!(COMMAND_WAIT).record((now_ms - sent).max(0) as f64 / 1000.0);
    }
}

/// How long a batch's replies took to be acknowledged by the broker.
pub(crate) fn replies_sent(took: Duration) {
    metrics::histogram!(REPLIES_SENT).record(took.as_secs_f64());
}

pub(crate) fn dead_lettered() {
    metrics::counter!(DEAD_LETTERS).increment(1);
}

/// A read of a newly assigned partition began past its committed offset: the broker skipped records (the
/// consumer reads the partition again from further back). Should stay 0 on a correct broker.
pub(crate) fn broker_skipped_records(topic: &str, partition: i32) {
    metrics::counter!(BROKER_SKIPS, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .increment(1);
}

pub(crate) fn offset_processed(topic: &str, partition: i32, offset: i64) {
    metrics::gauge!(LAST_OFFSET, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(offset as f64);
}

pub(crate) fn events_published(count: usize) {
    metrics::counter!(EVENTS_PUBLISHED).increment(count as u64);
}

pub(crate) fn admitted(count: i64) {
    metrics::counter!(ADMITTED).increment(count.max(0) as u64);
}

pub(crate) fn abandoned(count: i64) {
    metrics::counter!(ABANDONED).increment(count.max(0) as u64);
}

pub(crate) fn holds_expired(count: u64) {
    metrics::counter!(HOLDS_EXPIRED).increment(count);
}

/// The process-wide recorder: installed once, shared by every `run` in the process (tests start several).
fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut handle = HANDLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = handle.as_ref() {
        return Ok(handle.clone());
    }
    let installed = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(BATCH_SIZE.into()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )?
        .set_buckets_for_metric(
            Matcher::Full(BATCH_SECONDS.into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )?
        .install_recorder()
        .context("installing the metrics recorder (another one is already installed?)")?;
    *handle = Some(installed.clone());
    Ok(installed)
}

/// Serves `GET /metrics` on `port` until shutdown.
pub(crate) async fn serve(port: u16, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let handle = recorder()?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .with_context(|| format!("binding the metrics port {port}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving metrics");

    tokio::spawn(concert_core::telemetry::drain_histograms(
        handle.clone(),
        shutdown.clone(),
    ));

    let app = Router::new().route(
        "/metrics",
        get(move || {
            let body = handle.render();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    body,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped(&mut shutdown).await })
        .await
        .context("serving metrics")
}
