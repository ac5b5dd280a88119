//! The deletes of the retention role. Each statement deletes at most `batch` rows found through an index
//! (`ctid = ANY(ARRAY(... LIMIT n))`: a TID scan of exactly the rows picked), so no statement holds many
//! row locks or comes near the statement timeout, and the hot path never waits on it for long. Any number
//! of workers may run them at once: a row two of them picked is deleted by the first, and the second's
//! delete finds it gone and skips it.
//!
//! Every pick is ordered by the column its index is on, so the planner walks that index from its oldest
//! entry and stops after `batch` rows. Without the order, with everything old (as in a first round after
//! an upgrade) it chose a sequential scan, which after a few batches reads past the rows already deleted and
//! the young rows of every other room: a whole table per batch.

use anyhow::Context;
use sqlx::PgConnection;
use uuid::Uuid;

/// The rooms whose `pruned_upto` can move, with where to: the end of the last admission step before the
/// first step whose window closed less than `keep_secs` ago (or has not closed), so every place up to that
/// line has been final for at least `keep_secs`. Windows can differ in length (the admin may change
/// `active_seconds`), so the watermark stops at the first step still inside the retention rather than at the
/// last one outside it. Places not admitted yet are never below it.
pub(crate) async fn watermarks_due(
    conn: &mut PgConnection,
    keep_secs: f64,
) -> anyhow::Result<Vec<(Uuid, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT concert_id AS "concert_id!", upto AS "upto!" FROM (
             SELECT r.concert_id, r.pruned_upto, COALESCE(
                 (SELECT min(a.from_seq) - 1 FROM admissions a
                  WHERE a.concert_id = r.concert_id AND a.active_until >= now() - make_interval(secs => $1)),
                 (SELECT max(a.upto_seq) FROM admissions a WHERE a.concert_id = r.concert_id),
                 0) AS upto
             FROM waiting_rooms r) t
           WHERE upto > pruned_upto
           ORDER BY concert_id"#,
        keep_secs,
    )
    .fetch_all(conn)
    .await
    .context("finding the rooms whose pruned_upto can move")?;
    Ok(rows.into_iter().map(|r| (r.concert_id, r.upto)).collect())
}

/// Moves one room's `pruned_upto` forward (never back). One room per statement: the room's row is the lock
/// joins and admission steps take, and holding one lock at a time cannot deadlock with them.
pub(crate) async fn set_watermark(
    conn: &mut PgConnection,
    concert_id: Uuid,
    upto: i64,
) -> anyhow::Result<()> {
    sqlx::query!(
        "UPDATE waiting_rooms SET pruned_upto = $2 WHERE concert_id = $1 AND pruned_upto < $2",
        concert_id,
        upto,
    )
    .execute(conn)
    .await
    .context("moving a room's pruned_upto")?;
    Ok(())
}

/// Deletes up to `batch` places at or below their room's `pruned_upto`.
pub(crate) async fn delete_places(conn: &mut PgConnection, batch: i64) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM queue_entries WHERE ctid = ANY(ARRAY(
             SELECT q.ctid FROM waiting_rooms r
             CROSS JOIN LATERAL (
                 SELECT q.ctid FROM queue_entries q
                 WHERE q.concert_id = r.concert_id AND q.line_no <= r.pruned_upto
                 ORDER BY q.line_no LIMIT $1) q
             WHERE r.pruned_upto > 0
             LIMIT $1))",
        batch,
    )
    .execute(conn)
    .await
    .context("deleting pruned places")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` admission steps wholly at or below their room's `pruned_upto` (settled long
/// ago: nothing counts their places any more; the api reads only steps whose window is open).
pub(crate) async fn delete_admissions(conn: &mut PgConnection, batch: i64) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM admissions WHERE ctid = ANY(ARRAY(
             SELECT a.ctid FROM waiting_rooms r
             CROSS JOIN LATERAL (
                 SELECT a.ctid FROM admissions a
                 WHERE a.concert_id = r.concert_id AND a.upto_seq <= r.pruned_upto AND a.claims_settled
                 ORDER BY a.upto_seq LIMIT $1) a
             WHERE r.pruned_upto > 0
             LIMIT $1))",
        batch,
    )
    .execute(conn)
    .await
    .context("deleting old admission steps")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` decided requests (SUCCEEDED, FAILED, REFUSED) created more than `keep_secs` ago.
pub(crate) async fn delete_requests(
    conn: &mut PgConnection,
    keep_secs: f64,
    batch: i64,
) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM requests WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM requests
             WHERE status <> 'PENDING' AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2))",
        keep_secs,
        batch,
    )
    .execute(conn)
    .await
    .context("deleting old requests")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` idempotency keys (of commands) created more than `keep_secs` ago.
pub(crate) async fn delete_idempotency_keys(
    conn: &mut PgConnection,
    keep_secs: f64,
    batch: i64,
) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2))",
        keep_secs,
        batch,
    )
    .execute(conn)
    .await
    .context("deleting old idempotency keys")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` keys of balance charges created more than `keep_secs` ago.
pub(crate) async fn delete_charge_keys(
    conn: &mut PgConnection,
    keep_secs: f64,
    batch: i64,
) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM charge_keys WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM charge_keys WHERE created_at < now() - make_interval(secs => $1)
             ORDER BY created_at LIMIT $2))",
        keep_secs,
        batch,
    )
    .execute(conn)
    .await
    .context("deleting old charge keys")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` outbox rows published more than `keep_secs` ago (unpublished ones always stay).
pub(crate) async fn delete_published_events(
    conn: &mut PgConnection,
    keep_secs: f64,
    batch: i64,
) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM outbox WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM outbox
             WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => $1)
             ORDER BY published_at LIMIT $2))",
        keep_secs,
        batch,
    )
    .execute(conn)
    .await
    .context("deleting published outbox rows")?;
    Ok(done.rows_affected())
}

/// Deletes up to `batch` used proof-of-work challenges past their expiry (an expired challenge is refused
/// anyway; the minute covers clocks of api instances a little apart).
pub(crate) async fn delete_used_proofs(conn: &mut PgConnection, batch: i64) -> anyhow::Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM queue_proofs_used WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM queue_proofs_used WHERE expires_at < now() - interval '1 minute'
             ORDER BY expires_at LIMIT $1))",
        batch,
    )
    .execute(conn)
    .await
    .context("deleting expired proof-of-work challenges")?;
    Ok(done.rows_affected())
}
