//! Concerts, their dates and seats: the admin's writes and the buyers' reads.

use chrono::{DateTime, Utc};
use concert_core::admission::DEFAULT_POLICY;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(sqlx::FromRow)]
pub struct ConcertRow {
    pub concert_id: Uuid,
    pub title: String,
    pub venue: String,
}

/// Up to `limit` concerts, newest first, after the concert `after` when given (an unknown one gives none).
pub async fn concerts(
    pool: &PgPool,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ConcertRow>, sqlx::Error> {
    sqlx::query_as!(
        ConcertRow,
        "SELECT concert_id, title, venue FROM concerts \
         WHERE $1::uuid IS NULL \
            OR (created_at, concert_id) < (SELECT created_at, concert_id FROM concerts WHERE concert_id = $1) \
         ORDER BY created_at DESC, concert_id DESC LIMIT $2",
        after,
        limit,
    )
    .fetch_all(pool)
    .await
}

pub async fn concert_exists(pool: &PgPool, concert_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM concerts WHERE concert_id = $1) AS "exists!""#,
        concert_id,
    )
    .fetch_one(pool)
    .await
}

pub struct NewDate {
    pub date_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub seats: i32,
    pub price: i64,
}

/// Creates the concert, its waiting room with the default policy, its dates and every seat, atomically.
pub async fn create_concert(
    pool: &PgPool,
    concert_id: Uuid,
    title: &str,
    venue: &str,
    dates: &[NewDate],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO concerts (concert_id, title, venue) VALUES ($1, $2, $3)",
        concert_id,
        title,
        venue,
    )
    .execute(&mut *tx)
    .await?;
    let p = DEFAULT_POLICY;
    sqlx::query!(
        "INSERT INTO waiting_rooms (concert_id, max_active_users, admit_per_interval, interval_seconds, \
         active_seconds, hold_seconds) VALUES ($1, $2, $3, $4, $5, $6)",
        concert_id,
        p.max_active_users,
        p.admit_per_interval,
        p.interval_seconds,
        p.active_seconds,
        p.hold_seconds,
    )
    .execute(&mut *tx)
    .await?;
    for d in dates {
        sqlx::query!(
            "INSERT INTO concert_dates (date_id, concert_id, starts_at, total_seats) VALUES ($1, $2, $3, $4)",
            d.date_id,
            concert_id,
            d.starts_at,
            d.seats,
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "INSERT INTO seats (date_id, seat_no, price) SELECT $1, n, $2 FROM generate_series(1, $3) AS n",
            d.date_id,
            d.price,
            d.seats,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    let seats_added: i64 = dates.iter().map(|d| i64::from(d.seats)).sum();
    refresh_statistics(pool, seats_added).await;
    Ok(())
}

/// Takes fresh planner statistics of the catalog after a bulk write, when they are stale by autovacuum's
/// own rule (more rows changed since the last ANALYZE than 50 + 10% of the table; `seats_added` counts
/// the rows just written, which the server's activity statistics may not show for another second).
/// Autovacuum may be off or late, and a concert can add a hundred thousand seats at once; the service's
/// plans are made per execution and keyed (see `concert_core::db::SESSION_SETTINGS`), so they pick the
/// statistics up at once.
/// Not on every concert: an ANALYZE samples 30,000 seats (about 0.1 s of a core), and an admin creating
/// many small concerts would pay it each time. A failure only costs estimates, never the concert: it is
/// logged, not returned.
async fn refresh_statistics(pool: &PgPool, seats_added: i64) {
    let stale: Result<Option<bool>, sqlx::Error> = sqlx::query_scalar!(
        r#"SELECT s.n_mod_since_analyze + $1 > 50 + 0.1 * greatest(c.reltuples, 0) AS "stale!"
         FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
         WHERE s.relid = 'seats'::regclass"#,
        seats_added,
    )
    .fetch_optional(pool)
    .await;
    match stale {
        Ok(Some(false)) => return,
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "could not read the catalog's statistics age"),
    }
    if let Err(err) = sqlx::query!("ANALYZE concert_dates, seats")
        .execute(pool)
        .await
    {
        tracing::warn!(error = %err, "could not analyze the catalog after creating a concert");
    }
}

#[derive(sqlx::FromRow)]
pub struct DateRow {
    pub date_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub available_seats: i64,
    pub total_seats: i32,
}

/// The concert's dates that have not started and are not cancelled, with seats free right now (unsold, and unheld or lapsed).
pub async fn open_dates(pool: &PgPool, concert_id: Uuid) -> Result<Vec<DateRow>, sqlx::Error> {
    sqlx::query_as!(
        DateRow,
        "SELECT d.date_id, d.starts_at, d.total_seats, \
                count(*) FILTER (WHERE s.reservation_id IS NULL AND (s.hold_expires_at IS NULL OR s.hold_expires_at <= now())) AS \"available_seats!\" \
         FROM concert_dates d JOIN seats s ON s.date_id = d.date_id \
         WHERE d.concert_id = $1 AND d.starts_at > now() AND d.canceled_at IS NULL \
         GROUP BY d.date_id ORDER BY d.starts_at, d.date_id",
        concert_id,
    )
    .fetch_all(pool)
    .await
}

#[derive(sqlx::FromRow)]
pub struct SeatRow {
    pub seat_no: i32,
    pub price: i64,
    pub sold: bool,
    pub hold_expires_at: Option<DateTime<Utc>>,
}

/// Every seat of a date with the facts its status is decided on, and the database's clock.
pub async fn seats(
    pool: &PgPool,
    date_id: Uuid,
) -> Result<(DateTime<Utc>, Vec<SeatRow>), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let now: DateTime<Utc> = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
        .fetch_one(&mut *tx)
        .await?;
    let seats = sqlx::query_as!(
        SeatRow,
        "SELECT seat_no, price, reservation_id IS NOT NULL AS \"sold!\", hold_expires_at FROM seats \
         WHERE date_id = $1 ORDER BY seat_no",
        date_id,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((now, seats))
}

/// Which concert a date belongs to, and how many seats it has.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct DateInfo {
    pub concert_id: Uuid,
    pub total_seats: i32,
}

pub async fn date_info(pool: &PgPool, date_id: Uuid) -> Result<Option<DateInfo>, sqlx::Error> {
    sqlx::query_as!(
        DateInfo,
        "SELECT concert_id, total_seats FROM concert_dates WHERE date_id = $1",
        date_id,
    )
    .fetch_optional(pool)
    .await
}

/// What the api needs of a hold to route a release or payment to its partition.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct HoldRoute {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
}

/// The route of each of these holds that exists, by hold id.
pub async fn hold_routes(
    pool: &PgPool,
    hold_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, HoldRoute>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT hold_id, user_id, concert_id, date_id FROM holds WHERE hold_id = ANY($1)",
        hold_ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let route = HoldRoute {
                user_id: r.user_id,
                concert_id: r.concert_id,
                date_id: r.date_id,
            };
            (r.hold_id, route)
        })
        .collect())
}

pub async fn hold_route(pool: &PgPool, hold_id: Uuid) -> Result<Option<HoldRoute>, sqlx::Error> {
    sqlx::query_as!(
        HoldRoute,
        "SELECT user_id, concert_id, date_id FROM holds WHERE hold_id = $1",
        hold_id,
    )
    .fetch_optional(pool)
    .await
}
