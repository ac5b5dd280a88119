//! Polling a command's outcome.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use concert_core::request_id::RequestIds;
use concert_core::ErrorCode;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, PreferWait, RequestReader};
use crate::state::AppState;
use crate::submit::{self, decided, RequestDoc};

/// The request's status and, once decided, its `result` or `error`. Only its submitter may read it: the
/// user with their access token, or for the admin's requests (a date cancel) the admin token.
#[utoipa::path(get, path = "/v1/requests/{request_id}", tag = "requests",
    params(("request_id" = Uuid, Path), ("Prefer" = Option<String>, Header)), security(("bearer" = []), ("admin" = [])),
    responses((status = 200, body = RequestDoc), (status = 202, body = submit::Accepted), (status = 404, body = concert_core::Problem)))]
pub async fn poll(
    State(state): State<AppState>,
    RequestReader(user): RequestReader,
    ApiPath(request_id): ApiPath<Uuid>,
    PreferWait(wait): PreferWait,
) -> ApiResult<Response> {
    // The id itself proves whose it is: no lookup needed to refuse a stranger.
    let kind = state.request_ids.verify(user, request_id).ok_or_else(|| {
        ApiError::new(
            ErrorCode::RequestNotFound,
            format!("you have no request {request_id}"),
        )
    })?;
    let forgotten = forgotten(request_id);
    let known = match wait {
        Some(secs) if secs > 0 => {
            let rx = state.replies.subscribe(request_id);
            match submit::known_outcome(&state, request_id).await {
                Some(reply) => Some(reply),
                None if forgotten => None,
                None => {
                    submit::await_outcome(&state, request_id, rx, Duration::from_secs(secs)).await
                }
            }
        }
        _ => submit::known_outcome(&state, request_id).await,
    };
    Ok(match (known, wait) {
        (None, _) if forgotten => {
            return Err(ApiError::new(
                ErrorCode::RequestNotFound,
                format!("request {request_id} is older than the retention of outcomes"),
            ))
        }
        (Some(reply), Some(secs)) if secs > 0 => decided(&state, reply),
        (Some(reply), _) => {
            (StatusCode::OK, Json(RequestDoc::from_reply(&state, reply))).into_response()
        }
        (None, Some(secs)) if secs > 0 => submit::accepted(request_id, "PENDING"),
        (None, _) => (StatusCode::OK, Json(RequestDoc::pending(request_id, kind))).into_response(),
    })
}

/// An id issued longer ago than the retention keeps outcomes, with no outcome stored: pruned by the
/// retention, or never applied. Either way no outcome will come, so it is not found rather than PENDING for
/// good. Keyed ids carry no issue time and stay PENDING (`concert_core::request_id`).
fn forgotten(request_id: Uuid) -> bool {
    RequestIds::issued_at(request_id).is_some_and(|issued| {
        chrono::Utc::now().timestamp() - issued > RequestIds::FORGOTTEN_AFTER_SECS
    })
}
