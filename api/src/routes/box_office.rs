//! Box office figures for the organizer: per date and per concert, what is sold, held and left, the
//! revenue of the confirmed reservations and what was refunded.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::box_office::{date_sales, DateSales};
use crate::db::catalog::concert_exists;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, ApiPath};
use crate::state::AppState;

/// Where a date stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DateStatus {
    /// Not started, not cancelled: on sale.
    Open,
    /// Cancelled by the organizer (whether or not its start has passed).
    Canceled,
    /// Its start has passed.
    Started,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DateFigures {
    pub date_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub status: DateStatus,
    pub total_seats: i32,
    /// Seats of confirmed reservations.
    pub sold: i64,
    /// Unsold seats under a live hold.
    pub held: i64,
    /// `total_seats - sold - held`.
    pub available: i64,
    /// Prices of the confirmed reservations, in won.
    pub revenue: i64,
    /// Refunds of cancelled reservations, in won.
    pub refunded: i64,
}

impl From<DateSales> for DateFigures {
    fn from(d: DateSales) -> Self {
        let status = match d.canceled_at {
            Some(_) => DateStatus::Canceled,
            None if d.starts_at <= d.now => DateStatus::Started,
            None => DateStatus::Open,
        };
        Self {
            date_id: d.date_id,
            starts_at: d.starts_at,
            status,
            total_seats: d.total_seats,
            sold: d.sold,
            held: d.held,
            available: i64::from(d.total_seats) - d.sold - d.held,
            revenue: d.revenue,
            refunded: d.refunded,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Sales {
    pub concert_id: Uuid,
    /// The dates' revenue together.
    pub revenue: i64,
    /// The dates' refunds together.
    pub refunded: i64,
    pub dates: Vec<DateFigures>,
}

/// A concert's box office figures, per date (by start time) and in total.
#[utoipa::path(get, path = "/v1/admin/concerts/{concert_id}/sales", tag = "admin",
    params(("concert_id" = Uuid, Path)), security(("admin" = [])),
    responses((status = 200, body = Sales), (status = 401, body = concert_core::Problem), (status = 404, body = concert_core::Problem)))]
pub async fn sales(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(concert_id): ApiPath<Uuid>,
) -> ApiResult<Json<Sales>> {
    let rows = date_sales(&state.pool, concert_id).await?;
    if rows.is_empty() && !concert_exists(&state.pool, concert_id).await? {
        return Err(ApiError::new(
            ErrorCode::ConcertNotFound,
            format!("no concert {concert_id}"),
        ));
    }
    let dates: Vec<DateFigures> = rows.into_iter().map(DateFigures::from).collect();
    Ok(Json(Sales {
        concert_id,
        revenue: dates.iter().map(|d| d.revenue).sum(),
        refunded: dates.iter().map(|d| d.refunded).sum(),
        dates,
    }))
}
