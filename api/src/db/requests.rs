//! Stored outcomes of commands, written by the workers; the api reads them when its reply map has nothing.

use concert_core::commands::{CommandKind, Outcome, Reply};
use concert_core::Problem;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
struct RequestRow {
    request_id: Uuid,
    user_id: Uuid,
    kind: String,
    fingerprint: String,
    status: String,
    result: Option<serde_json::Value>,
    error: Option<serde_json::Value>,
}

/// The decided outcome of `request_id`, if a worker has committed one.
pub async fn outcome(pool: &PgPool, request_id: Uuid) -> anyhow::Result<Option<Reply>> {
    let row: Option<RequestRow> = sqlx::query_as(
        "SELECT request_id, user_id, kind, fingerprint, status, result, error FROM requests \
         WHERE request_id = $1 AND status <> 'PENDING'",
    )
    .bind(request_id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let kind = CommandKind::parse(&row.kind)
        .ok_or_else(|| anyhow::anyhow!("unknown kind {}", row.kind))?;
    let outcome = match (row.status.as_str(), row.result, row.error) {
        ("SUCCEEDED", result, _) => Outcome::Succeeded {
            result: result.unwrap_or(serde_json::Value::Null),
        },
        ("FAILED", _, Some(error)) => Outcome::Failed {
            error: serde_json::from_value::<Problem>(error)?,
        },
        (status, _, _) => anyhow::bail!(
            "request {} has status {status} without its outcome",
            row.request_id
        ),
    };
    Ok(Some(Reply {
        request_id: row.request_id,
        user_id: row.user_id,
        kind,
        fingerprint: row.fingerprint,
        outcome,
        completed_place: None,
    }))
}
