//! The waiting-room gate: which queue tokens may use the booking endpoints. Checked from the token's
//! signature and the in-memory room cache only.

use chrono::Utc;
use concert_core::admission::{EndReason, PlaceStatus};
use concert_core::token::QueueClaims;
use concert_core::ErrorCode;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Verifies a queue token's signature, its owner (when the caller is known) and its concert (when the
/// endpoint names one).
pub fn verify(
    state: &AppState,
    token: Option<&str>,
    user: Option<Uuid>,
    concert: Option<Uuid>,
) -> ApiResult<QueueClaims> {
    let token = token.ok_or_else(|| {
        ApiError::new(
            ErrorCode::QueueTokenInvalid,
            "send X-Queue-Token: <queue_token>",
        )
    })?;
    let claims = state.signer.verify_queue(token).map_err(|e| {
        ApiError::new(
            ErrorCode::QueueTokenInvalid,
            format!("queue token refused: {e}"),
        )
    })?;
    if user.is_some_and(|u| u != claims.uid) {
        return Err(ApiError::new(
            ErrorCode::QueueTokenInvalid,
            "the queue token belongs to another user",
        ));
    }
    if concert.is_some_and(|c| c != claims.cid) {
        return Err(ApiError::new(
            ErrorCode::QueueTokenInvalid,
            "the queue token is for another concert",
        ));
    }
    Ok(claims)
}

/// The place's status from the cache. A room the cache has not seen yet (created a moment ago) reads as
/// the start of the line.
pub fn status(state: &AppState, claims: &QueueClaims) -> PlaceStatus {
    state
        .rooms
        .status(claims.cid, claims.seq as i64, Utc::now())
        .unwrap_or_else(|| unseen_room(claims))
}

/// The place's status for a request made with its queue token: such a request claims an admitted place
/// (see `claim_seconds`), recorded in memory and written in the next batch.
pub fn status_claiming(state: &AppState, claims: &QueueClaims) -> PlaceStatus {
    state
        .rooms
        .status_claiming(claims.cid, claims.seq as i64, Utc::now())
        .unwrap_or_else(|| unseen_room(claims))
}

fn unseen_room(claims: &QueueClaims) -> PlaceStatus {
    PlaceStatus::Waiting {
        position: claims.seq as i64,
        eta_seconds: None,
    }
}

/// Verifies the token and lets only an ACTIVE place through (see [`admitted`]).
pub fn require_active(
    state: &AppState,
    token: Option<&str>,
    user: Option<Uuid>,
    concert: Option<Uuid>,
) -> ApiResult<QueueClaims> {
    let claims = verify(state, token, user, concert)?;
    admitted(state, &claims)?;
    Ok(claims)
}

/// Is the verified place ACTIVE? WAITING is 403 with the position, EXPIRED or COMPLETED is 401. The
/// call claims the place.
pub fn admitted(state: &AppState, claims: &QueueClaims) -> ApiResult<()> {
    match status_claiming(state, claims) {
        PlaceStatus::Active { .. } => Ok(()),
        PlaceStatus::PreQueued { opens_at } => Err(ApiError::new(
            ErrorCode::QueueNotAdmitted,
            match opens_at {
                Some(at) => format!(
                    "the room opens at {}: places are drawn then; poll GET /v1/queue/status",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ),
                None => "the room is opening: places are being drawn; poll GET /v1/queue/status"
                    .to_owned(),
            },
        )),
        PlaceStatus::Waiting { position, .. } => Err(concert_core::Problem::new(
            ErrorCode::QueueNotAdmitted,
            format!("you are number {position} in line; poll GET /v1/queue/status"),
        )
        .with_position(position as u64)
        .into()),
        PlaceStatus::Expired { reason } => Err(ApiError::new(
            ErrorCode::QueueTokenExpired,
            match reason {
                EndReason::NotClaimed => {
                    "the place was not claimed in time after admission; join again"
                }
                EndReason::WindowEnded => "the active window has closed; join again",
                EndReason::Pruned => "this place ended long ago; join again",
            },
        )),
        PlaceStatus::Completed => Err(ApiError::new(
            ErrorCode::QueueTokenExpired,
            "this place ended with a payment; join again",
        )),
    }
}
