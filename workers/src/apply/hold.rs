//! HOLD: one seat for one user until a deadline.

use concert_core::commands::HoldResult;
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{Decision, Refusal};
use crate::store::seats::{self, NewHold, SeatLookup};

/// What a HOLD asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldRequest {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub max_holds_per_user: i64,
}

/// Takes the seat if it is free, within the user's limit of live holds on the date.
pub(crate) async fn hold(
    conn: &mut PgConnection,
    request: HoldRequest,
) -> anyhow::Result<Decision<HoldResult>> {
    let HoldRequest {
        user_id,
        concert_id,
        date_id,
        seat_no,
        max_holds_per_user,
    } = request;
    let Some(terms) = seats::hold_terms(conn, concert_id, date_id, user_id).await? else {
        return Ok(Err(Refusal::new(
            ErrorCode::ConcertNotFound,
            format!("concert {concert_id} was not found"),
        )));
    };
    if terms.live_holds >= max_holds_per_user {
        return Ok(Err(Refusal::new(
            ErrorCode::HoldLimitReached,
            format!("at most {max_holds_per_user} seats may be held at once on one date"),
        )));
    }
    let new = NewHold {
        hold_id: Uuid::now_v7(),
        user_id,
        concert_id,
        date_id,
        seat_no,
        hold_seconds: terms.hold_seconds,
    };
    if let Some(taken) = seats::take_seat(conn, &new).await? {
        return Ok(Ok(HoldResult {
            hold_id: new.hold_id,
            date_id,
            seat_no,
            price: taken.price,
            expires_at: taken.expires_at,
        }));
    }
    let refusal = match seats::look_up_seat(conn, concert_id, date_id, seat_no).await? {
        SeatLookup::NoDate => Refusal::new(
            ErrorCode::DateNotFound,
            format!("date {date_id} is not a date of this concert"),
        ),
        SeatLookup::NoSeat => Refusal::new(
            ErrorCode::SeatNotFound,
            format!("seat {seat_no} does not exist on this date"),
        ),
        SeatLookup::Exists => Refusal::new(
            ErrorCode::SeatUnavailable,
            format!("seat {seat_no} is held or sold"),
        ),
    };
    Ok(Err(refusal))
}
