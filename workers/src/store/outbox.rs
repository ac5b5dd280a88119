//! The transactional outbox, as the relay reads it.

use anyhow::Context;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// An event waiting to be published.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PendingEvent {
    pub id: i64,
    pub event_id: Uuid,
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
        "SELECT id, event_id, event_key, payload FROM outbox
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
