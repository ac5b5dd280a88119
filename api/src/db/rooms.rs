//! Reads for the waiting-room cache and the admin figures.

use chrono::{DateTime, Utc};
use concert_core::admission::{Admission, Policy};
use sqlx::{PgPool, Row};
use uuid::Uuid;

pub struct RoomRow {
    pub concert_id: Uuid,
    pub policy: Policy,
    pub last_seq: i64,
    pub admitted_upto: i64,
    pub next_admit_at: Option<DateTime<Utc>>,
}

pub struct Changes {
    pub now: DateTime<Utc>,
    pub rooms: Vec<RoomRow>,
    pub admissions: Vec<(Uuid, Admission)>,
    pub completed: Vec<(Uuid, i64)>,
}

const ROOM_COLUMNS: &str =
    "concert_id, max_active_users, admit_per_interval, interval_seconds, active_seconds, \
                            hold_seconds, last_seq, admitted_upto, next_admit_at";

fn room_row(row: &sqlx::postgres::PgRow) -> Result<RoomRow, sqlx::Error> {
    Ok(RoomRow {
        concert_id: row.try_get("concert_id")?,
        policy: Policy {
            max_active_users: row.try_get("max_active_users")?,
            admit_per_interval: row.try_get("admit_per_interval")?,
            interval_seconds: row.try_get("interval_seconds")?,
            active_seconds: row.try_get("active_seconds")?,
            hold_seconds: row.try_get("hold_seconds")?,
        },
        last_seq: row.try_get("last_seq")?,
        admitted_upto: row.try_get("admitted_upto")?,
        next_admit_at: row.try_get("next_admit_at")?,
    })
}

/// Every room, the admission steps still open (all of them on the first read, else those recorded since
/// `admissions_since`), and the places completed since `completed_since` (all on the first read), from one
/// snapshot.
pub async fn read_changes(
    pool: &PgPool,
    admissions_since: Option<DateTime<Utc>>,
    completed_since: Option<DateTime<Utc>>,
) -> Result<Changes, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    let rooms = sqlx::query(&format!("SELECT {ROOM_COLUMNS} FROM waiting_rooms"))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(room_row)
        .collect::<Result<Vec<_>, _>>()?;
    let admissions = sqlx::query(
        "SELECT concert_id, from_seq, upto_seq, admitted_at, active_until FROM admissions \
         WHERE active_until > now() AND ($1::timestamptz IS NULL OR admitted_at >= $1)",
    )
    .bind(admissions_since)
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
            },
        ))
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let completed = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT concert_id, seq FROM queue_entries \
         WHERE completed_at IS NOT NULL AND ($1::timestamptz IS NULL OR completed_at >= $1)",
    )
    .bind(completed_since)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Changes {
        now,
        rooms,
        admissions,
        completed,
    })
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
         WHERE a.concert_id = $1 AND a.active_until > now() AND e.completed_at IS NULL",
    )
    .bind(concert_id)
    .fetch_one(pool)
    .await
}

/// Replaces a room's policy; false when the concert has no room.
pub async fn set_policy(pool: &PgPool, concert_id: Uuid, p: &Policy) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE waiting_rooms SET max_active_users = $2, admit_per_interval = $3, interval_seconds = $4, \
         active_seconds = $5, hold_seconds = $6, updated_at = now() WHERE concert_id = $1",
    )
    .bind(concert_id)
    .bind(p.max_active_users)
    .bind(p.admit_per_interval)
    .bind(p.interval_seconds)
    .bind(p.active_seconds)
    .bind(p.hold_seconds)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
