//! The transactional outbox, as the relay reads it, and the commands a transaction leaves in it for the log.

use anyhow::Context;
use concert_core::commands::CommandEnvelope;
use serde_json::Value;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// `outbox.topic` of the payment events (the default), published on `events.payments`.
pub(crate) const PAYMENT_EVENTS: &str = "events.payments";
/// `outbox.topic` of commands put on the log by a transaction, published on `commands.bookings`.
pub(crate) const BOOKING_COMMANDS: &str = "commands.bookings";

/// An event waiting to be published.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PendingEvent {
    pub id: i64,
    pub event_id: Uuid,
    /// Where it goes, without the deployment's topic prefix: [`PAYMENT_EVENTS`] or [`BOOKING_COMMANDS`].
    pub topic: String,
    pub event_key: String,
    pub payload: Value,
}

/// Leases up to `limit` unpublished events, oldest first, for `lease`: until then no other relay takes
/// them. Rows leased by another relay are skipped, so relays in several processes share the work without
/// waiting on each other; a relay that dies leaves its rows to the others once the lease ends. One short
/// statement: no transaction stays open while the broker delivers.
pub(crate) async fn lease_unpublished(
    pool: &PgPool,
    limit: i64,
    lease: Duration,
) -> anyhow::Result<Vec<PendingEvent>> {
    sqlx::query_as!(
        PendingEvent,
        "UPDATE outbox SET leased_until = now() + make_interval(secs => $2), attempts = attempts + 1
         WHERE id IN (
             SELECT id FROM outbox
             WHERE published_at IS NULL AND (leased_until IS NULL OR leased_until < now())
             ORDER BY id
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         RETURNING id, event_id, topic, event_key, payload",
        limit,
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await
    .context("leasing unpublished events")
    .map(|mut rows| {
        // RETURNING follows no order; the broker gets them oldest first.
        rows.sort_by_key(|e| e.id);
        rows
    })
}

/// Marks the events the broker confirmed.
pub(crate) async fn mark_published(pool: &PgPool, ids: &[i64]) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE outbox SET published_at = now(), leased_until = NULL WHERE id = ANY($1)",
        ids,
    )
    .execute(pool)
    .await
    .context("marking events published")?;
    Ok(())
}

/// Gives back events the broker did not confirm, for the next round rather than after the lease.
pub(crate) async fn release_leases(pool: &PgPool, ids: &[i64]) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE outbox SET leased_until = NULL WHERE id = ANY($1) AND published_at IS NULL",
        ids,
    )
    .execute(pool)
    .await
    .context("releasing leased events")?;
    Ok(())
}

/// A command for the bookings log, written in the transaction that decided it and published by the relay at
/// least once; its request id (`envelope.request_id`, also the row's `event_id`) makes a repeat a replay.
pub(crate) async fn queue_commands(
    conn: &mut PgConnection,
    envelopes: &[CommandEnvelope],
) -> anyhow::Result<()> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = envelopes.iter().map(|e| e.request_id).collect();
    let kinds: Vec<&str> = envelopes
        .iter()
        .map(|e| e.command.kind().as_str())
        .collect();
    let keys: Vec<String> = envelopes
        .iter()
        .map(|e| e.command.partition_key().to_string())
        .collect();
    let payloads: Vec<Value> = envelopes
        .iter()
        .map(|e| serde_json::to_value(e).context("encoding a command"))
        .collect::<anyhow::Result<_>>()?;
    sqlx::query!(
        "INSERT INTO outbox (event_id, event_type, event_key, payload, topic)
         SELECT t.event_id, t.event_type, t.event_key, t.payload, $5
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[]) AS t(event_id, event_type, event_key, payload)",
        &ids,
        &kinds[..] as &[&str],
        &keys,
        &payloads,
        BOOKING_COMMANDS,
    )
    .execute(conn)
    .await
    .context("queueing commands for the log")?;
    Ok(())
}
