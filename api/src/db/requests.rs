//! Stored outcomes of commands, written by the workers; the api reads them when its reply map has nothing.
//! The api writes one kind of row itself: the refusal of a command whose publish it could not confirm.

use concert_core::commands::{CommandEnvelope, Reply, StoredRequest, REFUSED};
use sqlx::PgPool;
use uuid::Uuid;

/// The decided outcome of `request_id`, if a worker has committed one.
pub async fn outcome(pool: &PgPool, request_id: Uuid) -> anyhow::Result<Option<Reply>> {
    let row: Option<StoredRequest> = sqlx::query_as!(
        StoredRequest,
        "SELECT request_id, user_id, kind, fingerprint, status, result, error FROM requests \
         WHERE request_id = $1 AND status IN ('SUCCEEDED', 'FAILED')",
        request_id,
    )
    .fetch_optional(pool)
    .await?;
    row.map(StoredRequest::into_reply).transpose()
}

/// Records `envelope`'s request as REFUSED unless a worker has recorded it already. `true`: it is refused
/// (now, or by a concurrent attempt of the same keyed request), and a copy that reaches the log later is not
/// applied. `false`: a worker took the command first (it is on the log and decided, or being decided), so it
/// was accepted after all.
///
/// The primary key orders this against the worker's insert: if the worker's transaction holds the row,
/// this insert waits for it to commit and then finds the row.
pub async fn refuse(pool: &PgPool, envelope: &CommandEnvelope) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO requests (request_id, user_id, kind, fingerprint, status, completed_at) \
         VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (request_id) DO NOTHING",
        envelope.request_id,
        envelope.user_id,
        envelope.command.kind().as_str(),
        &envelope.fingerprint,
        REFUSED,
    )
    .execute(pool)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(true);
    }
    // A separate statement, so a fresh snapshot (READ COMMITTED) that includes the row the insert met.
    let status: Option<String> = sqlx::query_scalar!(
        "SELECT status FROM requests WHERE request_id = $1",
        envelope.request_id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(status.is_none_or(|status| status == REFUSED))
}

/// Lifts the refusal of a keyed request before its retry is published, so that the retry (or the refused
/// copy, if it reaches a worker after this) is applied, once.
pub async fn withdraw_refusal(pool: &PgPool, request_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM requests WHERE request_id = $1 AND status = $2",
        request_id,
        REFUSED,
    )
    .execute(pool)
    .await?;
    Ok(())
}
