//! Holds, releases and payments: checked at the edge, then published to the concert date's partition where a
//! worker applies them in order. Without `Prefer: wait` they answer 202 at once; with it, the outcome.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use concert_core::commands::Command;
use concert_core::token::QueueClaims;
use concert_core::ErrorCode;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::catalog::{hold_route, HoldRoute};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, AuthUser, IdempotencyKey, PreferWait, QueueTokenHeader};
use crate::queue_gate;
use crate::state::AppState;
use crate::submit::{self, accepted, decided};

#[derive(Debug, Deserialize, ToSchema)]
pub struct HoldRequest {
    pub date_id: Uuid,
    pub seat_no: i32,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentRequest {
    pub hold_id: Uuid,
}

/// Answers per the submit-then-poll rules. A retry of a request already decided (same idempotency key) gets
/// its outcome whatever the token's state now: the first attempt may itself have ended the token (a payment
/// completes it). Anything new needs an ACTIVE place when `gate` names one (a release needs none).
async fn submit_and_answer(
    state: &AppState,
    user: Uuid,
    gate: Option<&QueueClaims>,
    command: Command,
    wait: Option<u64>,
    key: Option<String>,
) -> ApiResult<Response> {
    let wait = wait.map_or(Duration::ZERO, Duration::from_secs);
    let (request_id, reply) =
        match submit::already_decided(state, user, &command, key.as_deref()).await? {
            Some((request_id, reply)) => (request_id, Some(reply)),
            None => {
                if let Some(claims) = gate {
                    queue_gate::admitted(state, claims)?;
                }
                submit::submit(state, user, command, key.as_deref(), wait).await?
            }
        };
    Ok(match reply {
        Some(reply) if !wait.is_zero() => decided(state, reply),
        Some(reply) => accepted(request_id, reply.outcome.status_name()),
        None => accepted(request_id, "PENDING"),
    })
}

/// Holds a seat for the caller until `expires_at`.
#[utoipa::path(post, path = "/v1/holds", request_body = HoldRequest, tag = "bookings",
    params(("X-Queue-Token" = String, Header), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 202, body = submit::Accepted), (status = 200, body = submit::RequestDoc, description = "with Prefer: wait, the outcome"),
        (status = 401, body = concert_core::Problem), (status = 403, body = concert_core::Problem), (status = 404, body = concert_core::Problem), (status = 409, body = concert_core::Problem),
        (status = 429, body = concert_core::Problem)))]
pub async fn hold(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    QueueTokenHeader(token): QueueTokenHeader,
    PreferWait(wait): PreferWait,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<HoldRequest>,
) -> ApiResult<Response> {
    let claims = queue_gate::verify(&state, token.as_deref(), Some(user), None)?;
    let date = state.dates.get(&state.pool, body.date_id).await?;
    let date = date.filter(|d| d.concert_id == claims.cid).ok_or_else(|| {
        ApiError::new(
            ErrorCode::DateNotFound,
            format!("this concert has no date {}", body.date_id),
        )
    })?;
    if !(1..=date.total_seats).contains(&body.seat_no) {
        return Err(ApiError::new(
            ErrorCode::SeatNotFound,
            format!("seats are numbered 1 to {}", date.total_seats),
        ));
    }
    let command = Command::Hold {
        concert_id: claims.cid,
        date_id: body.date_id,
        seat_no: body.seat_no,
        queue_seq: claims.seq as i64,
    };
    submit_and_answer(&state, user, Some(&claims), command, wait, key).await
}

/// The hold, if it is the caller's and belongs to the token's concert; anything else reads as not found.
async fn own_hold(state: &AppState, claims: &QueueClaims, hold_id: Uuid) -> ApiResult<HoldRoute> {
    hold_route(&state.pool, hold_id)
        .await?
        .filter(|h| h.user_id == claims.uid && h.concert_id == claims.cid)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::HoldNotFound,
                format!("you have no hold {hold_id} for this concert"),
            )
        })
}

/// Releases the caller's hold; the seat is AVAILABLE again. Needs only the user's access token: a user can
/// always give back their own seat, also after their queue token ended (a payment completes it, the window
/// runs out). A queue token sent along is ignored.
#[utoipa::path(delete, path = "/v1/holds/{hold_id}", tag = "bookings",
    params(("hold_id" = Uuid, Path), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 202, body = submit::Accepted), (status = 200, body = submit::RequestDoc), (status = 404, body = concert_core::Problem),
        (status = 429, body = concert_core::Problem)))]
pub async fn release(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(hold_id): ApiPath<Uuid>,
    PreferWait(wait): PreferWait,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Response> {
    let hold = hold_route(&state.pool, hold_id)
        .await?
        .filter(|h| h.user_id == user)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::HoldNotFound,
                format!("you have no hold {hold_id}"),
            )
        })?;
    let command = Command::Release {
        concert_id: hold.concert_id,
        date_id: hold.date_id,
        hold_id,
    };
    submit_and_answer(&state, user, None, command, wait, key).await
}

/// Pays a live hold from the balance: the seat is SOLD to the caller and the queue token COMPLETED.
#[utoipa::path(post, path = "/v1/payments", request_body = PaymentRequest, tag = "bookings",
    params(("X-Queue-Token" = String, Header), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 202, body = submit::Accepted), (status = 200, body = submit::RequestDoc),
        (status = 404, body = concert_core::Problem), (status = 409, body = concert_core::Problem), (status = 410, body = concert_core::Problem), (status = 422, body = concert_core::Problem),
        (status = 429, body = concert_core::Problem)))]
pub async fn pay(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    QueueTokenHeader(token): QueueTokenHeader,
    PreferWait(wait): PreferWait,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<PaymentRequest>,
) -> ApiResult<Response> {
    let claims = queue_gate::verify(&state, token.as_deref(), Some(user), None)?;
    let hold = own_hold(&state, &claims, body.hold_id).await?;
    let command = Command::Pay {
        concert_id: hold.concert_id,
        date_id: hold.date_id,
        hold_id: body.hold_id,
        queue_seq: claims.seq as i64,
    };
    submit_and_answer(&state, user, Some(&claims), command, wait, key).await
}
