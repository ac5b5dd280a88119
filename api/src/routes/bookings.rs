//! Holds, releases and payments: checked at the edge, then published to the concert date's partition where a
//! worker applies them in order. Without `Prefer: wait` they answer 202 at once; with it, the outcome.

use std::collections::HashSet;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use concert_core::commands::Command;
use concert_core::token::QueueClaims;
use concert_core::ErrorCode;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::catalog::{hold_route, hold_routes, HoldRoute};
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

/// A checkout: `hold_id` (one hold) or `hold_ids` (1 to `MAX_HOLDS_PER_USER` distinct holds of one date),
/// never both.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentRequest {
    #[serde(default)]
    pub hold_id: Option<Uuid>,
    #[serde(default)]
    pub hold_ids: Option<Vec<Uuid>>,
}

impl PaymentRequest {
    /// The holds to pay, in the order named; the body's shape is checked here, the holds themselves by
    /// [`own_holds`].
    fn hold_ids(self, max: usize) -> ApiResult<Vec<Uuid>> {
        let ids = match (self.hold_id, self.hold_ids) {
            (Some(_), Some(_)) => {
                return Err(ApiError::validation("send hold_id or hold_ids, not both"))
            }
            (None, None) => return Err(ApiError::validation("hold_id or hold_ids is required")),
            (Some(id), None) => return Ok(vec![id]),
            (None, Some(ids)) => ids,
        };
        if ids.is_empty() || ids.len() > max {
            return Err(ApiError::validation(format!(
                "hold_ids names 1 to {max} holds"
            )));
        }
        let mut seen = HashSet::with_capacity(ids.len());
        if let Some(twice) = ids.iter().find(|id| !seen.insert(**id)) {
            return Err(ApiError::validation(format!("hold {twice} is named twice")));
        }
        Ok(ids)
    }
}

/// Answers per the submit-then-poll rules. A retry of a request already decided (same idempotency key) gets
/// its outcome whatever the token's state now: the first attempt may itself have ended the token (a payment
/// completes it). Anything new needs an ACTIVE place when `gate` names one (a release needs none).
pub(crate) async fn submit_and_answer(
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

/// The date of these holds, if every one is the caller's and belongs to the token's concert (anything else
/// reads as not found, naming the hold) and they are all on one date (a checkout is applied on its date's
/// partition).
async fn own_holds(
    state: &AppState,
    claims: &QueueClaims,
    hold_ids: &[Uuid],
) -> ApiResult<HoldRoute> {
    let routes = hold_routes(&state.pool, hold_ids).await?;
    let mut date: Option<HoldRoute> = None;
    for hold_id in hold_ids {
        let route = routes
            .get(hold_id)
            .filter(|h| h.user_id == claims.uid && h.concert_id == claims.cid)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::HoldNotFound,
                    format!("you have no hold {hold_id} for this concert"),
                )
            })?;
        if date.is_some_and(|d| d.date_id != route.date_id) {
            return Err(ApiError::validation(
                "the holds of one checkout must all be on one date",
            ));
        }
        date = Some(*route);
    }
    date.ok_or_else(|| ApiError::validation("hold_ids names no hold"))
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

/// A checkout: pays the caller's live holds of one date from the balance, all or none, in one command on
/// the date's partition. The seats are SOLD to the caller, the queue token COMPLETED, and the caller's
/// other live holds on the concert released by the workers.
#[utoipa::path(post, path = "/v1/payments", request_body = PaymentRequest, tag = "bookings",
    params(("X-Queue-Token" = String, Header), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 202, body = submit::Accepted), (status = 200, body = submit::RequestDoc),
        (status = 400, body = concert_core::Problem), (status = 404, body = concert_core::Problem), (status = 409, body = concert_core::Problem), (status = 410, body = concert_core::Problem), (status = 422, body = concert_core::Problem),
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
    let hold_ids = body.hold_ids(state.config.max_holds_per_user)?;
    let holds = own_holds(&state, &claims, &hold_ids).await?;
    let command = Command::Pay {
        concert_id: holds.concert_id,
        date_id: holds.date_id,
        hold_ids,
        queue_seq: claims.seq as i64,
    };
    submit_and_answer(&state, user, Some(&claims), command, wait, key).await
}
