//! Admin endpoints: creating concerts and setting waiting-room policies.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::admission::Policy;
use concert_core::seats::{DEFAULT_SEATS, MAX_SEATS};
use concert_core::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::catalog::{self as catalog, NewDate};
use crate::db::rooms;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, ApiJson, ApiPath};
use crate::state::AppState;
use crate::validate::text_field;

/// Highest seat price, in won.
const MAX_PRICE: i64 = 100_000_000;
/// Most dates one concert may be created with.
const MAX_DATES: usize = 366;

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewConcert {
    pub title: String,
    pub venue: String,
    pub dates: Vec<NewConcertDate>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewConcertDate {
    pub starts_at: DateTime<Utc>,
    /// Seats numbered 1..=seats; 50 when omitted.
    pub seats: Option<i32>,
    /// Price of every seat of the date, in won.
    pub price: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedDate {
    pub date_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub total_seats: i32,
    pub price: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedConcert {
    pub concert_id: Uuid,
    pub dates: Vec<CreatedDate>,
}

/// Creates a concert with its dates and seats; its waiting room starts with the default policy.
#[utoipa::path(post, path = "/v1/admin/concerts", request_body = NewConcert, tag = "admin", security(("admin" = [])),
    responses((status = 201, body = CreatedConcert), (status = 400, body = concert_core::Problem), (status = 401, body = concert_core::Problem)))]
pub async fn create_concert(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<NewConcert>,
) -> ApiResult<(StatusCode, Json<CreatedConcert>)> {
    let title = text_field("title", &body.title)?;
    let venue = text_field("venue", &body.venue)?;
    if body.dates.is_empty() || body.dates.len() > MAX_DATES {
        return Err(ApiError::validation(format!(
            "dates must list 1 to {MAX_DATES} dates"
        )));
    }
    let mut dates = Vec::with_capacity(body.dates.len());
    for (i, d) in body.dates.iter().enumerate() {
        let seats = d.seats.unwrap_or(DEFAULT_SEATS);
        if !(1..=MAX_SEATS).contains(&seats) {
            return Err(ApiError::validation(format!(
                "dates[{i}].seats must be between 1 and {MAX_SEATS}"
            )));
        }
        if !(0..=MAX_PRICE).contains(&d.price) {
            return Err(ApiError::validation(format!(
                "dates[{i}].price must be between 0 and {MAX_PRICE} won"
            )));
        }
        dates.push(NewDate {
            date_id: Uuid::now_v7(),
            starts_at: d.starts_at,
            seats,
            price: d.price,
        });
    }
    let concert_id = Uuid::now_v7();
    catalog::create_concert(&state.pool, concert_id, &title, &venue, &dates).await?;
    let dates = dates
        .into_iter()
        .map(|d| CreatedDate {
            date_id: d.date_id,
            starts_at: d.starts_at,
            total_seats: d.seats,
            price: d.price,
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(CreatedConcert { concert_id, dates }),
    ))
}

/// A waiting room's policy and live figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitingRoomView {
    pub concert_id: Uuid,
    #[serde(flatten)]
    pub policy: Policy,
    /// In line, not yet admitted.
    pub waiting: i64,
    /// Admitted, inside their window, not yet paid.
    pub active: i64,
    /// Admitted since the room opened.
    pub admitted_total: i64,
    /// Places given out since the room opened.
    pub joined_total: i64,
    /// Admitted places ended because nobody used them within `claim_seconds`.
    pub abandoned_total: i64,
}

async fn room_view(state: &AppState, concert_id: Uuid) -> ApiResult<WaitingRoomView> {
    let room = rooms::room(&state.pool, concert_id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::ConcertNotFound,
            format!("no concert {concert_id}"),
        )
    })?;
    let active = rooms::active_count(&state.pool, concert_id).await?;
    Ok(WaitingRoomView {
        concert_id,
        policy: room.policy,
        waiting: room.last_seq - room.admitted_upto,
        active,
        admitted_total: room.admitted_upto,
        joined_total: room.last_seq,
        abandoned_total: room.abandoned_total,
    })
}

/// Sets the admission policy: N per interval, at most M active, or both.
#[utoipa::path(put, path = "/v1/admin/concerts/{concert_id}/waiting-room", request_body = Policy, tag = "admin",
    params(("concert_id" = Uuid, Path)), security(("admin" = [])),
    responses((status = 200, body = WaitingRoomView), (status = 400, body = concert_core::Problem), (status = 404, body = concert_core::Problem)))]
pub async fn set_policy(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(concert_id): ApiPath<Uuid>,
    ApiJson(policy): ApiJson<Policy>,
) -> ApiResult<Json<WaitingRoomView>> {
    policy.validate().map_err(ApiError::validation)?;
    if !rooms::set_policy(&state.pool, concert_id, &policy).await? {
        return Err(ApiError::new(
            ErrorCode::ConcertNotFound,
            format!("no concert {concert_id}"),
        ));
    }
    Ok(Json(room_view(&state, concert_id).await?))
}

/// The policy and live figures of a concert's waiting room.
#[utoipa::path(get, path = "/v1/admin/concerts/{concert_id}/waiting-room", tag = "admin",
    params(("concert_id" = Uuid, Path)), security(("admin" = [])),
    responses((status = 200, body = WaitingRoomView), (status = 404, body = concert_core::Problem)))]
pub async fn get_policy(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(concert_id): ApiPath<Uuid>,
) -> ApiResult<Json<WaitingRoomView>> {
    Ok(Json(room_view(&state, concert_id).await?))
}
