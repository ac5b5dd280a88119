//! What the api reads and writes for cancellations: where a reservation's cancel goes (its owner and
//! date), and each room's cancellation cutoff.

use sqlx::PgPool;
use uuid::Uuid;

/// What the api needs of a reservation to route its cancel to its date's partition.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct ReservationRoute {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
}

pub async fn reservation_route(
    pool: &PgPool,
    reservation_id: Uuid,
) -> Result<Option<ReservationRoute>, sqlx::Error> {
    sqlx::query_as!(
        ReservationRoute,
        "SELECT user_id, concert_id, date_id FROM reservations WHERE reservation_id = $1",
        reservation_id,
    )
    .fetch_optional(pool)
    .await
}

/// A room's `cancel_cutoff_hours`; `None` when the concert has no room.
pub async fn cancel_cutoff(pool: &PgPool, concert_id: Uuid) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT cancel_cutoff_hours FROM waiting_rooms WHERE concert_id = $1",
        concert_id,
    )
    .fetch_optional(pool)
    .await
}

/// Sets a room's `cancel_cutoff_hours`; false when the concert has no room.
pub async fn set_cancel_cutoff(
    pool: &PgPool,
    concert_id: Uuid,
    hours: i32,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE waiting_rooms SET cancel_cutoff_hours = $2, updated_at = now() WHERE concert_id = $1",
        concert_id,
        hours,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}
