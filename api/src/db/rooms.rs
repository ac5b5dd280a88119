//! Reads for the waiting-room cache and the admin figures.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use concert_core::admission::{Admission, Policy};
use concert_core::commands::JoinResult;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::rooms::Claim;

pub struct RoomRow {
    pub concert_id: Uuid,
    pub policy: Policy,
    pub last_seq: i64,
    pub admitted_upto: i64,
    pub next_admit_at: Option<DateTime<Utc>>,
    pub abandoned_total: i64,
}

/// Where the incremental refresh stands.
#[derive(Debug, Default, Clone)]
pub struct Cursor {
    /// The previous read's snapshot xmin: every transaction below it had finished when that snapshot
    /// was taken, so its changes were read then. `None` before the first read.
    pub xmin: Option<i64>,
    /// Successful refreshes so far.
    pub refreshes: u64,
}

/// A place whose claim, completion or end was recorded since the cursor.
#[derive(Debug, Clone, Copy)]
pub struct PlaceChange {
    pub concert_id: Uuid,
    pub seq: i64,
    pub claimed: bool,
    pub completed: bool,
    pub ended: bool,
}

pub struct Changes {
    pub now: DateTime<Utc>,
    pub rooms: Vec<RoomRow>,
    pub admissions: Vec<(Uuid, Admission)>,
    pub places: Vec<PlaceChange>,
    pub cursor: Cursor,
}

const ROOM_COLUMNS: &str =
    "concert_id, max_active_users, admit_per_interval, interval_seconds, active_seconds, \
     hold_seconds, claim_seconds, last_seq, admitted_upto, next_admit_at, abandoned_total";

const PLACE_COLUMNS: &str =
    "concert_id, seq, claimed_at IS NOT NULL, completed_at IS NOT NULL, ended_at IS NOT NULL";

fn room_row(row: &sqlx::postgres::PgRow) -> Result<RoomRow, sqlx::Error> {
    Ok(RoomRow {
        concert_id: row.try_get("concert_id")?,
        policy: Policy {
            max_active_users: row.try_get("max_active_users")?,
            admit_per_interval: row.try_get("admit_per_interval")?,
            interval_seconds: row.try_get("interval_seconds")?,
            active_seconds: row.try_get("active_seconds")?,
            hold_seconds: row.try_get("hold_seconds")?,
            claim_seconds: row.try_get("claim_seconds")?,
        },
        last_seq: row.try_get("last_seq")?,
        admitted_upto: row.try_get("admitted_upto")?,
        next_admit_at: row.try_get("next_admit_at")?,
        abandoned_total: row.try_get("abandoned_total")?,
    })
}

/// Every room; the admission steps beyond the frontier the cache knows (`known`: concert to cached
/// `admitted_upto`; all open steps of a room it does not know); and the places claimed, completed or
/// ended by transactions the previous read may not have seen. All from one snapshot.
///
/// Neither read depends on when a transaction started: a step is found by its seqs (the frontier moves in
/// the step's own transaction, so a snapshot that shows the frontier shows the step), and a place change
/// carries its transaction id (`change_xid`, set by a trigger), read again until the snapshot xmin passes
/// it. A transaction that commits late is therefore never missed.
pub async fn read_changes(
    pool: &PgPool,
    cursor: &Cursor,
    known: &HashMap<Uuid, i64>,
) -> Result<Changes, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let (now, xmin): (DateTime<Utc>, i64) =
        sqlx::query_as("SELECT now(), pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(&mut *tx)
            .await?;
    let rooms = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM waiting_rooms"))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(room_row)
        .collect::<Result<Vec<_>, _>>()?;
    // Only the rooms whose frontier moved past what the cache holds.
    let (ids, uptos): (Vec<Uuid>, Vec<i64>) = rooms
        .iter()
        .filter_map(|r| {
            let cached = known.get(&r.concert_id).copied();
            (cached.is_none() || cached < Some(r.admitted_upto))
                .then(|| (r.concert_id, cached.unwrap_or(0)))
        })
        .unzip();
    let admissions = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query(
            "SELECT k.concert_id, a.from_seq, a.upto_seq, a.admitted_at, a.active_until, a.claim_until
             FROM unnest($1::uuid[], $2::bigint[]) k(concert_id, upto)
             CROSS JOIN LATERAL (
                 SELECT * FROM admissions a
                 WHERE a.concert_id = k.concert_id AND a.upto_seq > k.upto AND a.active_until > now()) a",
        )
        .bind(&ids)
        .bind(&uptos)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("concert_id")?,
                Admission {
                    from_seq: r.try_get("from_seq")?,
                    upto_seq: r.try_get("upto_seq")?,
                    admitted_at: r.try_get("admitted_at")?,
                    active_until: r.try_get("active_until")?,
                    claim_until: r.try_get("claim_until")?,
                },
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?
    };
    // Two statements rather than one with a CASE, so the incremental read always uses the index.
    let incremental = format!(
        "SELECT {PLACE_COLUMNS} FROM queue_entries WHERE change_xid >= $1::bigint::text::xid8"
    );
    // First read: every completed or ended place, and the claims that can still matter (no window is
    // longer than MAX_SECONDS).
    let first = format!(
        "SELECT {PLACE_COLUMNS} FROM queue_entries
         WHERE change_xid IS NOT NULL
           AND (completed_at IS NOT NULL OR ended_at IS NOT NULL
                OR claimed_at > now() - make_interval(secs => $1))"
    );
    let places = match cursor.xmin {
        Some(xmin) => sqlx::query_as::<_, (Uuid, i64, bool, bool, bool)>(&incremental).bind(xmin),
        None => sqlx::query_as::<_, (Uuid, i64, bool, bool, bool)>(&first)
            .bind(f64::from(concert_core::admission::MAX_SECONDS)),
    }
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(concert_id, seq, claimed, completed, ended)| PlaceChange {
        concert_id,
        seq,
        claimed,
        completed,
        ended,
    })
    .collect();
    tx.commit().await?;
    Ok(Changes {
        now,
        rooms,
        admissions,
        places,
        cursor: Cursor {
            xmin: Some(xmin),
            refreshes: cursor.refreshes + 1,
        },
    })
}

/// Writes a batch of claims in one statement: each place's first use, if it is neither claimed nor
/// ended already. Rows are locked in (concert, seq) order, the order the ticker ends places in, so the
/// two never deadlock; a place the ticker ended first keeps its end (the claim came too late to land).
pub async fn write_claims(pool: &PgPool, claims: &[Claim]) -> Result<u64, sqlx::Error> {
    let concerts: Vec<Uuid> = claims.iter().map(|c| c.concert_id).collect();
    let seqs: Vec<i64> = claims.iter().map(|c| c.seq).collect();
    let ats: Vec<DateTime<Utc>> = claims.iter().map(|c| c.at).collect();
    let done = sqlx::query(
        "WITH target AS (
             SELECT q.concert_id, q.seq, c.at
             FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[]) c(concert_id, seq, at)
             JOIN queue_entries q ON q.concert_id = c.concert_id AND q.seq = c.seq
             WHERE q.claimed_at IS NULL AND q.ended_at IS NULL
             ORDER BY q.concert_id, q.seq
             FOR UPDATE OF q)
         UPDATE queue_entries q SET claimed_at = target.at
         FROM target WHERE q.concert_id = target.concert_id AND q.seq = target.seq",
    )
    .bind(&concerts)
    .bind(&seqs)
    .bind(&ats)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The user's newest place in the concert's line that has neither completed nor ended, with the join
/// request that gave it (`None` if that request is not found). The caller judges whether it is live.
pub async fn newest_place(
    pool: &PgPool,
    concert_id: Uuid,
    user_id: Uuid,
) -> Result<Option<(JoinResult, Option<Uuid>)>, sqlx::Error> {
    let row: Option<(i64, DateTime<Utc>, Option<Uuid>)> = sqlx::query_as(
        "SELECT q.seq, q.joined_at,
                (SELECT r.request_id FROM requests r
                 WHERE r.user_id = q.user_id AND r.kind = 'JOIN' AND r.status = 'SUCCEEDED'
                   AND r.result->>'concert_id' = q.concert_id::text
                   AND (r.result->>'seq')::bigint = q.seq
                 ORDER BY r.created_at LIMIT 1)
         FROM queue_entries q
         WHERE q.concert_id = $1 AND q.user_id = $2 AND q.completed_at IS NULL AND q.ended_at IS NULL
         ORDER BY q.seq DESC LIMIT 1",
    )
    .bind(concert_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(seq, joined_at, request_id)| {
        (
            JoinResult {
                concert_id,
                seq,
                joined_at,
            },
            request_id,
        )
    }))
}

/// One room's policy and counters, straight from the database (admin view).
pub async fn room(pool: &PgPool, concert_id: Uuid) -> Result<Option<RoomRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {ROOM_COLUMNS} FROM waiting_rooms WHERE concert_id = $1"
    ))
    .bind(concert_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(room_row).transpose()
}

/// ACTIVE places right now: admitted, inside their window, not completed.
pub async fn active_count(pool: &PgPool, concert_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM admissions a \
         JOIN queue_entries e ON e.concert_id = a.concert_id AND e.seq BETWEEN a.from_seq AND a.upto_seq \
         WHERE a.concert_id = $1 AND a.active_until > now() AND e.completed_at IS NULL \
           AND e.ended_at IS NULL",
    )
    .bind(concert_id)
    .fetch_one(pool)
    .await
}

/// Replaces a room's policy; false when the concert has no room.
pub async fn set_policy(pool: &PgPool, concert_id: Uuid, p: &Policy) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE waiting_rooms SET max_active_users = $2, admit_per_interval = $3, interval_seconds = $4, \
         active_seconds = $5, hold_seconds = $6, claim_seconds = $7, updated_at = now() \
         WHERE concert_id = $1",
    )
    .bind(concert_id)
    .bind(p.max_active_users)
    .bind(p.admit_per_interval)
    .bind(p.interval_seconds)
    .bind(p.active_seconds)
    .bind(p.hold_seconds)
    .bind(p.claim_seconds)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
