//! The outbox relay: publishes payment events written by payment transactions, and the commands some
//! transactions leave for the log (a checkout's releases of the payer's holds on other dates), each row to
//! the topic it names.
//!
//! Lease a batch of rows (one short statement), produce them outside any transaction, wait for the broker's
//! confirmation, then mark them. Several relays share the rows without losing any; a relay that dies
//! between producing and marking leaves its rows to the others when their lease ends ([`LEASE`]), so the
//! event is sent again and consumers drop the repeat by `event_id`.

use std::time::Duration;

use anyhow::Context;
use concert_core::kafka_stats::Producer;
use concert_core::topics::Topics;
use futures::future::join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sqlx::PgPool;
use tokio::sync::watch;
use tracing::instrument;

use crate::backoff::{sleep_or_stop, Backoff};
use crate::metrics;
use crate::store::outbox::{self, PendingEvent, BOOKING_COMMANDS, PAYMENT_EVENTS};

/// Most events claimed in one round.
const RELAY_BATCH: i64 = 100;
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a relay has its rows to itself: longer than a delivery can take (`QUEUE_TIMEOUT` to enter the
/// producer's queue plus its 15 s delivery timeout), short enough that a dead relay's rows go out soon.
const LEASE: Duration = Duration::from_secs(30);

/// Publishes every `interval`, or at once again after a full round, until shutdown.
pub(crate) async fn run(
    pool: PgPool,
    producer: Producer,
    topics: Topics,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut backoff = Backoff::new();
    loop {
        let delay = match publish_round(&pool, &producer, &topics).await {
            Ok(claimed) => {
                backoff.reset();
                if claimed == RELAY_BATCH as usize {
                    Duration::ZERO
                } else {
                    interval
                }
            }
            Err(err) => {
                let delay = backoff.next_delay().max(interval);
                tracing::warn!(
                    error = format!("{err:#}"),
                    ?delay,
                    "relaying payment events failed"
                );
                delay
            }
        };
        if !sleep_or_stop(delay, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// One round: claim, produce, mark the confirmed ones. Returns how many rows were claimed; an error if any
/// event was not confirmed (it stays unpublished for the next round).
#[instrument(skip_all)]
async fn publish_round(
    pool: &PgPool,
    producer: &Producer,
    topics: &Topics,
) -> anyhow::Result<usize> {
    let events = outbox::lease_unpublished(pool, RELAY_BATCH, LEASE).await?;
    if events.is_empty() {
        return Ok(0);
    }
    let deliveries = join_all(events.iter().map(|event| publish(producer, topics, event))).await;
    let mut confirmed = Vec::with_capacity(events.len());
    let mut failed = Vec::new();
    let mut first_failure = None;
    for (event, delivery) in events.iter().zip(deliveries) {
        match delivery {
            Ok(()) => confirmed.push(event.id),
            Err(err) => {
                failed.push(event.id);
                first_failure.get_or_insert(err);
            }
        }
    }
    if !confirmed.is_empty() {
        abort_if_chaos_failpoint(confirmed.len());
        outbox::mark_published(pool, &confirmed).await?;
    }
    if !failed.is_empty() {
        outbox::release_leases(pool, &failed).await?;
    }
    metrics::events_published(confirmed.len());
    if let Some(err) = first_failure {
        anyhow::bail!(
            "{} of {} events were not delivered: {err}",
            events.len() - confirmed.len(),
            events.len()
        );
    }
    Ok(events.len())
}

/// TEST-ONLY FAILPOINT. With `CHAOS_RELAY_ABORT_AFTER_PUBLISH=1` in the environment, the process aborts
/// right after the broker confirmed a batch and before the batch is marked published: the crash the outbox
/// must survive. The fault suite (`tests/tests/chaos`) sets it on one relay process and checks that another
/// relay publishes the same events again. Never set it in a deployment.
fn abort_if_chaos_failpoint(confirmed: usize) {
    if std::env::var_os("CHAOS_RELAY_ABORT_AFTER_PUBLISH").is_some_and(|v| v == "1") {
        tracing::error!(
            confirmed,
            "CHAOS_RELAY_ABORT_AFTER_PUBLISH: aborting after the broker confirmed, before marking"
        );
        std::process::abort();
    }
}

/// The topic an outbox row goes to, with the deployment's prefix.
fn destination<'a>(topics: &'a Topics, event: &PendingEvent) -> anyhow::Result<&'a str> {
    match event.topic.as_str() {
        PAYMENT_EVENTS => Ok(&topics.payment_events),
        BOOKING_COMMANDS => Ok(&topics.bookings),
        other => anyhow::bail!("outbox row {} names an unknown topic {other:?}", event.id),
    }
}

async fn publish(producer: &Producer, topics: &Topics, event: &PendingEvent) -> anyhow::Result<()> {
    let topic = destination(topics, event)?;
    let payload = serde_json::to_vec(&event.payload).context("encoding the event")?;
    let event_id = event.event_id.to_string();
    let headers = OwnedHeaders::new().insert(Header {
        key: "event_id",
        value: Some(&event_id),
    });
    let record = FutureRecord::to(topic)
        .key(&event.event_key)
        .payload(&payload)
        .headers(headers);
    producer
        .send(record, QUEUE_TIMEOUT)
        .await
        .map_err(|(err, _)| anyhow::anyhow!(err))?;
    Ok(())
}
