//! Admin endpoints: creating concerts and setting waiting-room policies.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, DurationRound, Utc};
use concert_core::admission::Policy;
use concert_core::cancellation::{check_cutoff_hours, DEFAULT_CANCEL_CUTOFF_HOURS};
use concert_core::seats::{DEFAULT_SEATS, MAX_SEATS};
use concert_core::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::cancellations;
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
    /// A reservation can be cancelled until this many hours before its date starts.
    pub cancel_cutoff_hours: i32,
    #[serde(flatten)]
    pub opening: OpeningView,
}

/// What `PUT .../waiting-room` takes: the policy, whose fields mean their default when omitted, and the
/// settings that keep their current value when omitted.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PolicyChange {
    #[serde(flatten)]
    pub policy: Policy,
    /// Hours before a date starts until which its reservations can be cancelled, 0 to 8760 (24 until set).
    #[serde(default)]
    pub cancel_cutoff_hours: Option<i32>,
    /// When the room opens: joins before it are pre-queued and put in a random order then. `null`
    /// removes it; omitted keeps it. Changing it once the room opened is 422.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub opens_at: Option<Option<DateTime<Utc>>>,
    /// Proof-of-work bits a join must bring, 0 (off, the default) to 24; omitted keeps it.
    #[serde(default)]
    pub join_proof_bits: Option<i32>,
}

/// Tells an omitted field (`None`, by `default`) from one sent as `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The draw that ordered a room's pre-queue at its opening.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrawView {
    pub drawn_at: DateTime<Utc>,
    /// How many pre-queued places it ordered.
    pub places: i64,
    /// How the order was drawn, with its seed, so it can be recomputed.
    pub method: String,
}

/// The pre-queue part of the room's view (issue 20).
#[derive(Debug, Serialize, ToSchema)]
pub struct OpeningView {
    pub opens_at: Option<DateTime<Utc>>,
    pub join_proof_bits: i32,
    /// Places waiting for the opening's draw.
    pub pre_queued: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draw: Option<DrawView>,
}

async fn opening_view(state: &AppState, concert_id: Uuid) -> ApiResult<OpeningView> {
    let opening = rooms::opening(&state.pool, concert_id)
        .await?
        .unwrap_or_default();
    let draw = match (&opening.draw, opening.drawn_at) {
        (Some(draw), Some(drawn_at)) => Some(DrawView {
            drawn_at,
            places: draw.places,
            method: draw.method(),
        }),
        _ => None,
    };
    Ok(OpeningView {
        opens_at: opening.opens_at,
        join_proof_bits: opening.join_proof_bits,
        pre_queued: if opening.pre_queuing() {
            opening.prequeue_upto
        } else {
            0
        },
        draw,
    })
}

/// Checks and applies `opens_at` and `join_proof_bits` of a PUT. `opens_at` goes first: refused (422)
/// once the room opened, before anything else is written.
async fn apply_opening(
    state: &AppState,
    concert_id: Uuid,
    opens_at: Option<Option<DateTime<Utc>>>,
    join_proof_bits: Option<i32>,
) -> ApiResult<()> {
    if let Some(bits) = join_proof_bits {
        if !(0..=crate::queue_proof::MAX_BITS).contains(&bits) {
            return Err(ApiError::validation(format!(
                "join_proof_bits must be between 0 and {}",
                crate::queue_proof::MAX_BITS
            )));
        }
    }
    if let Some(at) = opens_at {
        // Postgres keeps microseconds: compare what it will hold.
        let at = at.map(|t| {
            t.duration_trunc(chrono::TimeDelta::microseconds(1))
                .unwrap_or(t)
        });
        match rooms::set_opens_at(&state.pool, concert_id, at).await? {
            rooms::OpeningChange::Done => {}
            rooms::OpeningChange::NoRoom => {
                return Err(ApiError::new(
                    ErrorCode::ConcertNotFound,
                    format!("no concert {concert_id}"),
                ))
            }
            rooms::OpeningChange::AlreadyOpen => {
                let mut problem = concert_core::Problem::new(
                    ErrorCode::ValidationFailed,
                    "the waiting room has opened: opens_at can no longer be set, changed or removed",
                );
                problem.status = 422;
                return Err(ApiError::Problem(Box::new(problem)));
            }
        }
    }
    if let Some(bits) = join_proof_bits {
        rooms::set_join_proof_bits(&state.pool, concert_id, bits).await?;
    }
    Ok(())
}

async fn room_view(state: &AppState, concert_id: Uuid) -> ApiResult<WaitingRoomView> {
    let room = rooms::room(&state.pool, concert_id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::ConcertNotFound,
            format!("no concert {concert_id}"),
        )
    })?;
    let active = rooms::active_count(&state.pool, concert_id).await?;
    let cancel_cutoff_hours = cancellations::cancel_cutoff(&state.pool, concert_id)
        .await?
        .unwrap_or(DEFAULT_CANCEL_CUTOFF_HOURS);
    Ok(WaitingRoomView {
        concert_id,
        policy: room.policy,
        waiting: room.last_seq - room.admitted_upto,
        active,
        admitted_total: room.admitted_upto,
        joined_total: room.last_seq,
        abandoned_total: room.abandoned_total,
        cancel_cutoff_hours,
        opening: opening_view(state, concert_id).await?,
    })
}

/// Sets the admission policy: N per interval, at most M active, or both.
#[utoipa::path(put, path = "/v1/admin/concerts/{concert_id}/waiting-room", request_body = PolicyChange, tag = "admin",
    params(("concert_id" = Uuid, Path)), security(("admin" = [])),
    responses((status = 200, body = WaitingRoomView), (status = 400, body = concert_core::Problem), (status = 404, body = concert_core::Problem)))]
pub async fn set_policy(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(concert_id): ApiPath<Uuid>,
    ApiJson(change): ApiJson<PolicyChange>,
) -> ApiResult<Json<WaitingRoomView>> {
    let PolicyChange {
        policy,
        cancel_cutoff_hours,
        opens_at,
        join_proof_bits,
    } = change;
    policy.validate().map_err(ApiError::validation)?;
    if let Some(hours) = cancel_cutoff_hours {
        check_cutoff_hours(hours).map_err(ApiError::validation)?;
    }
    apply_opening(&state, concert_id, opens_at, join_proof_bits).await?;
    if !rooms::set_policy(&state.pool, concert_id, &policy).await? {
        return Err(ApiError::new(
            ErrorCode::ConcertNotFound,
            format!("no concert {concert_id}"),
        ));
    }
    if let Some(hours) = cancel_cutoff_hours {
        cancellations::set_cancel_cutoff(&state.pool, concert_id, hours).await?;
    }
    // This instance answers joins by the new settings at once (the others within a refresh).
    if let Err(err) = state.rooms.refresh(&state.pool).await {
        tracing::warn!(
            error = format!("{err:#}"),
            "refreshing the room cache after a policy change"
        );
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
