//! Cancellations: a user cancels a reservation, the organizer cancels a date. Both are commands on the
//! date's partition, ordered with its holds and payments, submitted and answered like them.

use axum::extract::State;
use axum::response::Response;
use concert_core::commands::{Command, ADMIN_USER_ID};
use concert_core::ErrorCode;

use uuid::Uuid;

use crate::db::cancellations::reservation_route;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, ApiPath, AuthUser, IdempotencyKey, PreferWait};
use crate::routes::bookings::submit_and_answer;
use crate::state::AppState;
use crate::submit;

/// How long a date cancel waits for its outcome when the request does not say (`Prefer: wait`).
const DATE_CANCEL_WAIT_SECONDS: u64 = 30;

/// Cancels the caller's reservation: the seat is AVAILABLE again, the price back on the balance (a
/// `REFUND` entry), and a `payment.refunded` event is published. Needs only the user's access token.
#[utoipa::path(delete, path = "/v1/reservations/{reservation_id}", tag = "bookings",
    params(("reservation_id" = Uuid, Path), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 202, body = submit::Accepted), (status = 200, body = submit::RequestDoc, description = "with Prefer: wait, the outcome: result is a CancelResult"),
        (status = 404, body = concert_core::Problem, description = "RESERVATION_NOT_FOUND"),
        (status = 409, body = concert_core::Problem, description = "ALREADY_CANCELED, or CANCEL_CLOSED past the cutoff"),
        (status = 429, body = concert_core::Problem)))]
pub async fn cancel_reservation(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(reservation_id): ApiPath<Uuid>,
    PreferWait(wait): PreferWait,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Response> {
    let reservation = reservation_route(&state.pool, reservation_id)
        .await?
        .filter(|r| r.user_id == user)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ReservationNotFound,
                format!("you have no reservation {reservation_id}"),
            )
        })?;
    let command = Command::Cancel {
        concert_id: reservation.concert_id,
        date_id: reservation.date_id,
        reservation_id,
    };
    submit_and_answer(&state, user, None, command, wait, key).await
}

/// Cancels a date: every live hold released, every confirmed reservation cancelled and refunded, the date
/// closed for booking. Waits up to 30 s for the outcome unless `Prefer: wait` says otherwise; the request
/// it answers (or names in `Location`) may be polled with the admin token. Sending it again refunds
/// nothing more and answers the same counts.
#[utoipa::path(post, path = "/v1/admin/dates/{date_id}/cancel", tag = "admin",
    params(("date_id" = Uuid, Path), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("admin" = [])),
    responses((status = 200, body = submit::RequestDoc, description = "the outcome: result is a DateCancelResult"),
        (status = 202, body = submit::Accepted), (status = 401, body = concert_core::Problem),
        (status = 404, body = concert_core::Problem, description = "DATE_NOT_FOUND")))]
pub async fn cancel_date(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(date_id): ApiPath<Uuid>,
    PreferWait(wait): PreferWait,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Response> {
    let date = state
        .dates
        .get(&state.pool, date_id)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::DateNotFound,
                format!("there is no date {date_id}"),
            )
        })?;
    let command = Command::CancelDate {
        concert_id: date.concert_id,
        date_id,
    };
    let wait = wait.unwrap_or(DATE_CANCEL_WAIT_SECONDS);
    submit_and_answer(&state, ADMIN_USER_ID, None, command, Some(wait), key).await
}
