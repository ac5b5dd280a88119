//! Stored outcomes of commands, written by the workers; the api reads them when its reply map has nothing.

use concert_core::commands::{Reply, StoredRequest};
use sqlx::PgPool;
use uuid::Uuid;

/// The decided outcome of `request_id`, if a worker has committed one.
pub async fn outcome(pool: &PgPool, request_id: Uuid) -> anyhow::Result<Option<Reply>> {
    let row: Option<StoredRequest> = sqlx::query_as(
        "SELECT request_id, user_id, kind, fingerprint, status, result, error FROM requests \
         WHERE request_id = $1 AND status <> 'PENDING'",
    )
    .bind(request_id)
    .fetch_optional(pool)
    .await?;
    row.map(StoredRequest::into_reply).transpose()
}
