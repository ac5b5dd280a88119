//! The `requests` table: the dedupe record and stored outcome of every command taken from the log.

use std::collections::HashSet;

use anyhow::Context;
use concert_core::commands::{CommandKind, Outcome};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// A request row as stored, for re-sending the outcome of a command seen before.
pub(crate) use concert_core::commands::StoredRequest;

/// A command to record: who sent it, what it is, and where it sat in the log (`source_partition`,
/// `source_offset`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewRequest<'a> {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub kind: CommandKind,
    pub fingerprint: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Records every command as PENDING in one statement and returns the ids that were new. An id already
/// present was applied before (an earlier delivery): it must not be applied again.
pub(crate) async fn insert_pending(
    conn: &mut PgConnection,
    requests: &[NewRequest<'_>],
) -> anyhow::Result<HashSet<Uuid>> {
    let ids: Vec<Uuid> = requests.iter().map(|r| r.request_id).collect();
    let users: Vec<Uuid> = requests.iter().map(|r| r.user_id).collect();
    let kinds: Vec<&str> = requests.iter().map(|r| r.kind.as_str()).collect();
    let fingerprints: Vec<&str> = requests.iter().map(|r| r.fingerprint).collect();
    let partitions: Vec<i32> = requests.iter().map(|r| r.partition).collect();
    let offsets: Vec<i64> = requests.iter().map(|r| r.offset).collect();
    // The text arrays are bound as `&[&str]` (the macro would want `&[String]`); the SQL is checked all the same.
    let new: Vec<Uuid> = sqlx::query_scalar!(
        "INSERT INTO requests (request_id, user_id, kind, fingerprint, status, source_partition, source_offset)
         SELECT r, u, k, f, 'PENDING', p, o
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::bigint[]) AS t(r, u, k, f, p, o)
         ON CONFLICT (request_id) DO NOTHING
         RETURNING request_id",
        &ids,
        &users,
        &kinds[..] as &[&str],
        &fingerprints[..] as &[&str],
        &partitions,
        &offsets,
    )
    .fetch_all(conn)
    .await
    .context("recording requests as pending")?;
    Ok(new.into_iter().collect())
}

/// The stored rows of requests seen before.
pub(crate) async fn load(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> anyhow::Result<Vec<StoredRequest>> {
    sqlx::query_as!(
        StoredRequest,
        "SELECT request_id, user_id, kind, fingerprint, status, result, error
         FROM requests WHERE request_id = ANY($1)",
        ids,
    )
    .fetch_all(conn)
    .await
    .context("loading stored outcomes")
}

/// The `status`, `result` and `error` columns of an outcome.
pub(crate) fn columns(
    outcome: &Outcome,
) -> anyhow::Result<(&'static str, Option<Value>, Option<Value>)> {
    Ok(match outcome {
        Outcome::Succeeded { result } => ("SUCCEEDED", Some(result.clone()), None),
        Outcome::Failed { error } => (
            "FAILED",
            None,
            Some(serde_json::to_value(error).context("encoding a problem")?),
        ),
    })
}

/// Stores the outcomes of the commands applied in this transaction, in one statement.
pub(crate) async fn complete(
    conn: &mut PgConnection,
    outcomes: &[(Uuid, &Outcome)],
) -> anyhow::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(outcomes.len());
    let mut statuses = Vec::with_capacity(outcomes.len());
    let mut results = Vec::with_capacity(outcomes.len());
    let mut errors = Vec::with_capacity(outcomes.len());
    for (id, outcome) in outcomes {
        let (status, result, error) = columns(outcome)?;
        ids.push(*id);
        statuses.push(status);
        results.push(result);
        errors.push(error);
    }
    // Bound as `&[&str]` and `&[Option<Value>]` (a missing result or error is NULL); the macro would want
    // `&[String]` and `&[Value]`. The SQL is checked all the same.
    sqlx::query!(
        "UPDATE requests r
         SET status = t.status, result = t.result, error = t.error, completed_at = now()
         FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[], $4::jsonb[]) AS t(request_id, status, result, error)
         WHERE r.request_id = t.request_id",
        &ids,
        &statuses[..] as &[&str],
        &results[..] as &[Option<Value>],
        &errors[..] as &[Option<Value>],
    )
    .execute(conn)
    .await
    .context("storing outcomes")?;
    Ok(())
}

/// Records a command that could not be applied as FAILED, in its own transaction. Returns `false` when the
/// request was already recorded (its stored outcome stands).
pub(crate) async fn insert_completed(
    conn: &mut PgConnection,
    request: &NewRequest<'_>,
    outcome: &Outcome,
) -> anyhow::Result<bool> {
    let (status, result, error) = columns(outcome)?;
    let inserted = sqlx::query!(
        "INSERT INTO requests (request_id, user_id, kind, fingerprint, status, result, error,
                               source_partition, source_offset, completed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now())
         ON CONFLICT (request_id) DO NOTHING",
        request.request_id,
        request.user_id,
        request.kind.as_str(),
        request.fingerprint,
        status,
        result,
        error,
        request.partition,
        request.offset,
    )
    .execute(conn)
    .await
    .context("recording a failed request")?;
    Ok(inserted.rows_affected() == 1)
}
