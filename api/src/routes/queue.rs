//! Joining a waiting room (through the log) and polling one's place (from memory).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::admission::{retry_after_seconds, PlaceStatus};
use concert_core::commands::{Command, JoinResult, Outcome};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{problem_response, ApiResult};
use crate::extract::{ApiPath, AuthUser, IdempotencyKey, PreferWait, QueueTokenHeader};
use crate::routes::catalog::ensure_concert;
use crate::state::AppState;
use crate::submit::{self, accepted, join_view, status_name, JoinView};

#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    #[serde(flatten)]
    pub place: JoinView,
    pub request_id: Uuid,
}

/// Joins the concert's waiting room. The join goes through the log, which decides the order; the answer
/// comes once a worker has placed it in line (201), or 202 to poll if that takes longer than the wait.
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
    let (request_id, reply) =
        match submit::already_decided(&state, user, &command, key.as_deref()).await? {
            Some((request_id, reply)) => (request_id, Some(reply)),
            None => submit::submit(&state, user, command, key.as_deref(), wait).await?,
        };
    let Some(reply) = reply else {
        return Ok(accepted(request_id, "PENDING"));
    };
    Ok(match reply.outcome {
        Outcome::Succeeded { result } => {
            let place: JoinResult = serde_json::from_value(result).map_err(anyhow::Error::from)?;
            let body = Joined {
                place: join_view(&state, user, &place),
                request_id,
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Outcome::Failed { error } => problem_response(&error.with_request_id(request_id)),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStatus {
    /// WAITING, ACTIVE, EXPIRED or COMPLETED.
    pub status: &'static str,
    /// 1 means next in line (WAITING only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<i64>,
    /// When the active window closes (ACTIVE only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_until: Option<DateTime<Utc>>,
}

/// The status of the place an `X-Queue-Token` names, answered from memory; `Retry-After` says when to poll again.
#[utoipa::path(get, path = "/v1/queue/status", tag = "waiting room", params(("X-Queue-Token" = String, Header)),
    responses((status = 200, body = QueueStatus), (status = 401, body = concert_core::Problem)))]
pub async fn status(
    State(state): State<AppState>,
    QueueTokenHeader(token): QueueTokenHeader,
) -> ApiResult<Response> {
    let claims = crate::queue_gate::verify(&state, token.as_deref(), None, None)?;
    let place = crate::queue_gate::status(&state, &claims);
    let body = QueueStatus {
        status: status_name(&place),
        position: match place {
            PlaceStatus::Waiting { position, .. } => Some(position),
            _ => None,
        },
        eta_seconds: match place {
            PlaceStatus::Waiting { eta_seconds, .. } => eta_seconds,
            _ => None,
        },
        active_until: match place {
            PlaceStatus::Active { active_until } => Some(active_until),
            _ => None,
        },
    };
    let retry_after = HeaderValue::from(retry_after_seconds(&place));
    Ok((
        [
            (header::RETRY_AFTER, retry_after),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Json(body),
    )
        .into_response())
}
