//! The public concert list, and the dates and seats an ACTIVE queue token may see.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::seats::{seat_status, SeatStatus};
use concert_core::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::catalog as store;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiPath, MaybeUser, QueueTokenHeader};
use crate::paging::{Page, PageQuery};
use crate::queue_gate;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Concert {
    pub concert_id: Uuid,
    pub title: String,
    pub venue: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Concerts {
    pub concerts: Vec<Concert>,
    /// Present when more concerts follow: pass it as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Concerts, newest first, a page at a time. Public.
#[utoipa::path(get, path = "/v1/concerts", params(PageQuery), tag = "catalog",
    responses((status = 200, body = Concerts), (status = 400, body = concert_core::Problem)))]
pub async fn concerts(
    State(state): State<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<Json<Concerts>> {
    let page = Page::from_query(query)?;
    let mut rows = store::concerts(&state.pool, page.after, page.fetch()).await?;
    let next_cursor = page.cut(&mut rows, |c| c.concert_id);
    let concerts = rows
        .into_iter()
        .map(|c| Concert {
            concert_id: c.concert_id,
            title: c.title,
            venue: c.venue,
        })
        .collect();
    Ok(Json(Concerts {
        concerts,
        next_cursor,
    }))
}

/// A concert known to the room cache or, if just created, to the database.
pub async fn ensure_concert(state: &AppState, concert_id: Uuid) -> ApiResult<()> {
    if state.rooms.contains(concert_id) || store::concert_exists(&state.pool, concert_id).await? {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::ConcertNotFound,
            format!("no concert {concert_id}"),
        ))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DateView {
    pub date_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub available_seats: i64,
    pub total_seats: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dates {
    pub dates: Vec<DateView>,
}

/// The concert's dates still open for booking. Needs an ACTIVE queue token for this concert.
#[utoipa::path(get, path = "/v1/concerts/{concert_id}/dates", tag = "catalog",
    params(("concert_id" = Uuid, Path), ("X-Queue-Token" = String, Header)),
    responses((status = 200, body = Dates), (status = 401, body = concert_core::Problem), (status = 403, body = concert_core::Problem), (status = 404, body = concert_core::Problem)))]
pub async fn dates(
    State(state): State<AppState>,
    ApiPath(concert_id): ApiPath<Uuid>,
    MaybeUser(user): MaybeUser,
    QueueTokenHeader(token): QueueTokenHeader,
) -> ApiResult<Json<Dates>> {
    ensure_concert(&state, concert_id).await?;
    queue_gate::require_active(&state, token.as_deref(), user, Some(concert_id))?;
    let dates = store::open_dates(&state.pool, concert_id)
        .await?
        .into_iter()
        .map(|d| DateView {
            date_id: d.date_id,
            starts_at: d.starts_at,
            available_seats: d.available_seats,
            total_seats: d.total_seats,
        })
        .collect();
    Ok(Json(Dates { dates }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SeatView {
    pub seat_no: i32,
    pub price: i64,
    pub status: SeatStatus,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Seats {
    pub seats: Vec<SeatView>,
}

/// Every seat of a date with its price and status. Needs an ACTIVE queue token for this concert.
#[utoipa::path(get, path = "/v1/concerts/{concert_id}/dates/{date_id}/seats", tag = "catalog",
    params(("concert_id" = Uuid, Path), ("date_id" = Uuid, Path), ("X-Queue-Token" = String, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, body = Seats, description = "with an ETag"), (status = 304, description = "the map the If-None-Match named is unchanged"), (status = 401, body = concert_core::Problem), (status = 403, body = concert_core::Problem), (status = 404, body = concert_core::Problem)))]
pub async fn seats(
    State(state): State<AppState>,
    ApiPath((concert_id, date_id)): ApiPath<(Uuid, Uuid)>,
    MaybeUser(user): MaybeUser,
    QueueTokenHeader(token): QueueTokenHeader,
    headers: HeaderMap,
) -> ApiResult<Response> {
    ensure_concert(&state, concert_id).await?;
    queue_gate::require_active(&state, token.as_deref(), user, Some(concert_id))?;
    match state.dates.get(&state.pool, date_id).await? {
        Some(info) if info.concert_id == concert_id => {}
        _ => {
            return Err(ApiError::new(
                ErrorCode::DateNotFound,
                format!("concert {concert_id} has no date {date_id}"),
            ))
        }
    }
    let map = state
        .seat_maps
        .get(date_id, || render_seats(&state, date_id))
        .await?;
    // `no-cache`: a browser keeps the map but asks again each time, with `If-None-Match`.
    let cache = [
        (header::ETAG, map.etag.clone()),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        ),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| map.matches(tags));
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let json = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    Ok((cache, json, map.body).into_response())
}

/// The date's seat map as JSON, read from Postgres.
async fn render_seats(state: &AppState, date_id: Uuid) -> ApiResult<Vec<u8>> {
    let (now, rows) = store::seats(&state.pool, date_id).await?;
    let seats = rows
        .into_iter()
        .map(|s| SeatView {
            seat_no: s.seat_no,
            price: s.price,
            status: seat_status(s.sold, s.hold_expires_at, now),
        })
        .collect();
    Ok(serde_json::to_vec(&Seats { seats }).map_err(anyhow::Error::from)?)
}
