//! Box office figures: what each date of a concert sold, holds, has left, took in and gave back.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// One date's figures, all from one snapshot, with the database's clock.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DateSales {
    pub date_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    pub total_seats: i32,
    /// Seats of CONFIRMED reservations.
    pub sold: i64,
    /// Unsold seats under a hold whose deadline lies ahead.
    pub held: i64,
    /// Prices of the CONFIRMED reservations.
    pub revenue: i64,
    /// Refunds of the date's cancelled reservations.
    pub refunded: i64,
}

/// The figures of every date of the concert, by start time; none if the concert has no dates (or does
/// not exist).
pub async fn date_sales(pool: &PgPool, concert_id: Uuid) -> Result<Vec<DateSales>, sqlx::Error> {
    sqlx::query_as!(
        DateSales,
        r#"SELECT d.date_id, d.starts_at, d.canceled_at, now() AS "now!", d.total_seats,
                  sold.n AS "sold!", held.n AS "held!", sold.revenue AS "revenue!", refunded.amount AS "refunded!"
         FROM concert_dates d
         CROSS JOIN LATERAL (
             SELECT count(*) AS n, coalesce(sum(r.price), 0)::bigint AS revenue FROM reservations r
             WHERE r.date_id = d.date_id AND r.status = 'CONFIRMED') sold
         CROSS JOIN LATERAL (
             SELECT count(*) AS n FROM seats s
             WHERE s.date_id = d.date_id AND s.reservation_id IS NULL AND s.hold_expires_at > now()) held
         CROSS JOIN LATERAL (
             SELECT coalesce(sum(f.amount), 0)::bigint AS amount FROM refunds f WHERE f.date_id = d.date_id) refunded
         WHERE d.concert_id = $1
         ORDER BY d.starts_at, d.date_id"#,
        concert_id,
    )
    .fetch_all(pool)
    .await
}
