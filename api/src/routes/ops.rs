//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use concert_core::ErrorCode;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// How old the waiting-room cache may be before the instance stops calling itself ready: it answers
/// statuses and admission checks from that cache.
const CACHE_STALE_AFTER: Duration = Duration::from_secs(5);

/// The database and the broker are reachable, and the waiting-room cache refreshed recently. Answered from
/// memory: the database and the broker are checked in the background (`crate::readiness`).
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200), (status = 503, body = concert_core::Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.readiness.database();
    let broker = state.readiness.broker();
    let cache = state.rooms.is_fresh(CACHE_STALE_AFTER);
    if database && broker && cache {
        Json(json!({"status": "ready", "database": "up", "broker": "up", "waiting_room_cache": "fresh"}))
            .into_response()
    } else {
        let down: Vec<&str> = [
            ("the database is unreachable", database),
            ("the broker is unreachable", broker),
            ("the waiting-room cache is stale", cache),
        ]
        .iter()
        .filter(|(_, up)| !up)
        .map(|(n, _)| *n)
        .collect();
        ApiError::new(
            ErrorCode::Unavailable,
            format!("not ready: {}", down.join(", ")),
        )
        .into_response()
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!("reply_map_entries").set(state.replies.len() as f64);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
