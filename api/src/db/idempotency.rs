//! Which body each Idempotency-Key was first used with, so that a reuse with another body is refused even
//! while the first request is still pending (its outcome, which also carries the fingerprint, comes later).

use sqlx::PgPool;
use uuid::Uuid;

/// The body a key was first used with, and whether this use was the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstUse {
    pub fingerprint: String,
    /// `false` for a retry (or a reuse) of the key: an earlier attempt may have been refused after
    /// publishing (see `requests::refuse`).
    pub now: bool,
}

/// Records `fingerprint` as the body of the keyed request `request_id` unless one is recorded already, and
/// returns the recorded one. Safe under races between api instances: the primary key lets exactly one
/// insert win, and a losing insert waits for the winner's commit, so the read that follows sees its row.
pub async fn first_fingerprint(
    pool: &PgPool,
    request_id: Uuid,
    user_id: Uuid,
    fingerprint: &str,
) -> Result<FirstUse, sqlx::Error> {
    let inserted: Option<String> = sqlx::query_scalar!(
        "INSERT INTO idempotency_keys (request_id, user_id, fingerprint) VALUES ($1, $2, $3) \
         ON CONFLICT (request_id) DO NOTHING RETURNING fingerprint",
        request_id,
        user_id,
        fingerprint,
    )
    .fetch_optional(pool)
    .await?;
    if let Some(fingerprint) = inserted {
        return Ok(FirstUse {
            fingerprint,
            now: true,
        });
    }
    // A separate statement, so a fresh snapshot (READ COMMITTED) that includes the winner's row.
    let fingerprint = sqlx::query_scalar!(
        "SELECT fingerprint FROM idempotency_keys WHERE request_id = $1",
        request_id,
    )
    .fetch_one(pool)
    .await?;
    Ok(FirstUse {
        fingerprint,
        now: false,
    })
}
