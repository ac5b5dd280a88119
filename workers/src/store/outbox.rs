//! The transactional outbox, as the relay reads it, and the commands a transaction leaves in it for the log.

use anyhow::Context;
use concert_core::commands::CommandEnvelope;
use serde_json::Value;
use sqlx::PgConnection;
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

/// Claims up to `limit` unpublished events, oldest first. Rows another relay has claimed are skipped, so
/// relays in several processes share the work without waiting on each other.
pub(crate) async fn claim_unpublished(
    conn: &mut PgConnection,
    limit: i64,
) -> anyhow::Result<Vec<PendingEvent>> {
    sqlx::query_as!(
        PendingEvent,
        "SELECT id, event_id, topic, event_key, payload FROM outbox
         WHERE published_at IS NULL
         ORDER BY id
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
        limit,
    )
    .fetch_all(conn)
    .await
    .context("claiming unpublished events")
}

/// Marks the events the broker confirmed.
pub(crate) async fn mark_published(conn: &mut PgConnection, ids: &[i64]) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
        ids,
    )
    .execute(conn)
    .await
    .context("marking events published")?;
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
