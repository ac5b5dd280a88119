//! Joining a waiting room (through the log) and polling one's place (from memory).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::admission::{retry_after_seconds, PlaceStatus, DEFAULT_POLICY};
use concert_core::commands::{Command, JoinResult, Outcome};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{problem_response, ApiResult};
use crate::extract::{ApiPath, AuthUser, IdempotencyKey, PreferWait, QueueTokenHeader};
use crate::rooms::KnownPlace;
use crate::routes::catalog::ensure_concert;
use crate::state::AppState;
use crate::submit::{self, accepted, join_view, JoinView};

#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    #[serde(flatten)]
    pub place: JoinView,
    pub request_id: Uuid,
}

/// Joins the concert's waiting room. The join goes through the log, which decides the order; the answer
/// comes once a worker has placed it in line (201), or 202 to poll if that takes longer than the wait.
/// A user whose place is still live (waiting, or inside an open window) gets that place again at once,
/// without anything being published.
#[utoipa::path(post, path = "/v1/concerts/{concert_id}/queue", tag = "waiting room",
    params(("concert_id" = Uuid, Path), ("Prefer" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    security(("bearer" = [])),
    responses((status = 201, body = Joined), (status = 202, body = submit::Accepted), (status = 404, body = concert_core::Problem)))]
pub async fn join(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    ApiPath(concert_id): ApiPath<Uuid>,
    PreferWait(wait): PreferWait,
    IdempotencyKey(key): IdempotencyKey,
) -> ApiResult<Response> {
    ensure_concert(&state, concert_id).await?;
    let wait = wait.map_or(state.config.join_wait, Duration::from_secs);
    let command = Command::Join { concert_id };
    let decided = submit::already_decided(&state, user, &command, key.as_deref()).await?;
    let (request_id, reply) = match decided {
        Some((request_id, reply)) => (request_id, Some(reply)),
        None => {
            if let Some(known) = live_place(&state, concert_id, user) {
                metrics::counter!("joins_answered_from_cache_total").increment(1);
                let place = JoinResult {
                    concert_id,
                    seq: known.seq,
                    joined_at: known.joined_at,
                };
                return Ok(created(&state, user, &place, known.request_id));
            }
            submit::submit(&state, user, command, key.as_deref(), wait).await?
        }
    };
    let Some(reply) = reply else {
        return Ok(accepted(request_id, "PENDING"));
    };
    Ok(match reply.outcome {
        Outcome::Succeeded { result } => {
            let place: JoinResult = serde_json::from_value(result).map_err(anyhow::Error::from)?;
            state.rooms.learn_place(user, &place, request_id);
            created(&state, user, &place, request_id)
        }
        Outcome::Failed { error } => problem_response(&error.with_request_id(request_id)),
    })
}

fn created(state: &AppState, user: Uuid, place: &JoinResult, request_id: Uuid) -> Response {
    let body = Joined {
        place: join_view(state, user, place),
        request_id,
    };
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The user's live place, from memory: every instance learns each place from the JOIN replies it reads.
/// There is deliberately no database fallback: a flash crowd's first joins would each cost a query (and
/// exhaust the pool). An instance that missed the reply (it started later) publishes the join, and the
/// worker answers with the same live place: the answer is the same, only the shortcut is lost.
fn live_place(state: &AppState, concert_id: Uuid, user: Uuid) -> Option<KnownPlace> {
    state.rooms.live_place(concert_id, user, Utc::now())
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QueueStatus {
    /// WAITING, ACTIVE, EXPIRED or COMPLETED.
    pub status: &'static str,
    /// 1 means next in line (WAITING only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Estimated seconds until admission (WAITING only); counts the time a full room needs to free slots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<i64>,
    /// When the active window closes (ACTIVE only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_until: Option<DateTime<Utc>>,
    /// Why the place ended (EXPIRED only): NOT_CLAIMED or WINDOW_ENDED.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl QueueStatus {
    pub fn of(place: &PlaceStatus) -> Self {
        let mut body = Self {
            status: place.name(),
            position: None,
            eta_seconds: None,
            active_until: None,
            reason: None,
        };
        match *place {
            PlaceStatus::Waiting {
                position,
                eta_seconds,
            } => {
                body.position = Some(position);
                body.eta_seconds = eta_seconds;
            }
            PlaceStatus::Active { active_until } => body.active_until = Some(active_until),
            PlaceStatus::Expired { reason } => body.reason = Some(reason.as_str()),
            PlaceStatus::Completed => {}
        }
        body
    }
}

/// The status of the place an `X-Queue-Token` names, answered from memory; `Retry-After` says when to poll
/// again. Polling an admitted place claims it.
#[utoipa::path(get, path = "/v1/queue/status", tag = "waiting room", params(("X-Queue-Token" = String, Header)),
    responses((status = 200, body = QueueStatus), (status = 401, body = concert_core::Problem)))]
pub async fn status(
    State(state): State<AppState>,
    QueueTokenHeader(token): QueueTokenHeader,
) -> ApiResult<Response> {
    let claims = crate::queue_gate::verify(&state, token.as_deref(), None, None)?;
    let place = crate::queue_gate::status_claiming(&state, &claims);
    let policy = state.rooms.policy(claims.cid).unwrap_or(DEFAULT_POLICY);
    let retry_after = HeaderValue::from(retry_after_seconds(&place, &policy));
    Ok((
        [
            (header::RETRY_AFTER, retry_after),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(QueueStatus::of(&place)),
    )
        .into_response())
}
