//! CANCEL_DATE: the organizer cancels a date. Every live hold on it is released, every confirmed
//! reservation is cancelled and refunded (one `payment.refunded` event each), and the date is closed: holds
//! and payments after it on the log are refused `DATE_CLOSED`. All of it in the batch's transaction, with a
//! handful of set-based statements however many seats the date has.
//!
//! A repeat (another request, or the same one from a zombie consumer) finds the date closed and answers
//! what the cancel that closed it did, refunding nothing more: the date's row is locked first, so two
//! cancels of one date are applied one after the other even in two processes.

use chrono::{DateTime, Utc};
use concert_core::commands::{Command, CommandEnvelope, DateCancelResult};
use concert_core::seats::HoldState;
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::cancel::refund;
use super::decision::{Decision, Refusal};
use crate::store::dates::{self, DateCancel};
use crate::store::refunds::{self, Refund, RefundCause};
use crate::store::seats;

/// What a CANCEL_DATE asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CancelDateRequest {
    pub concert_id: Uuid,
    pub date_id: Uuid,
}

impl CancelDateRequest {
    pub(crate) fn from_envelope(envelope: &CommandEnvelope) -> Option<Self> {
        match envelope.command {
            Command::CancelDate {
                concert_id,
                date_id,
            } => Some(Self {
                concert_id,
                date_id,
            }),
            _ => None,
        }
    }
}

/// Applies a run of date cancels, one after the other in log order (each reads what the one before wrote).
pub(crate) async fn cancel_date_run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    requests: &[CancelDateRequest],
) -> anyhow::Result<Vec<Decision<DateCancelResult>>> {
    let mut decisions = Vec::with_capacity(requests.len());
    for r in requests {
        decisions.push(cancel_date(conn, now, r).await?);
    }
    Ok(decisions)
}

async fn cancel_date(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    r: &CancelDateRequest,
) -> anyhow::Result<Decision<DateCancelResult>> {
    let Some(date) = dates::lock_date(conn, r.date_id)
        .await?
        .filter(|d| d.concert_id == r.concert_id)
    else {
        return Ok(Err(Refusal::new(
            ErrorCode::DateNotFound,
            format!("there is no date {}", r.date_id),
        )));
    };
    let cancel = match date.canceled {
        Some(earlier) => earlier,
        None => {
            let holds_released = release_holds(conn, r.date_id, now).await?;
            let reservations_refunded = refund_reservations(conn, r.date_id, now).await?;
            let cancel = DateCancel {
                canceled_at: now,
                holds_released,
                reservations_refunded,
            };
            dates::close(conn, r.date_id, &cancel).await?;
            cancel
        }
    };
    Ok(Ok(DateCancelResult {
        date_id: r.date_id,
        canceled_at: cancel.canceled_at,
        reservations_refunded: i64::from(cancel.reservations_refunded),
        holds_released: i64::from(cancel.holds_released),
    }))
}

/// Ends every hold the date's seats name and frees the seats: a live one is RELEASED (and counted), a
/// lapsed one the sweeper has not reached yet EXPIRED, as the sweeper would.
async fn release_holds(
    conn: &mut PgConnection,
    date_id: Uuid,
    now: DateTime<Utc>,
) -> anyhow::Result<i32> {
    let held = dates::seat_holds(conn, date_id).await?;
    let ids: Vec<Uuid> = held.iter().map(|&(_, _, hold_id)| hold_id).collect();
    let holds = seats::lock_holds(conn, &ids).await?;
    let (mut released, mut expired) = (Vec::new(), Vec::new());
    for (hold_id, hold) in &holds {
        if hold.facts.state != HoldState::Held {
            continue;
        }
        if now < hold.facts.expires_at {
            released.push(*hold_id);
        } else {
            expired.push(*hold_id);
        }
    }
    seats::end_holds(conn, &released, HoldState::Released).await?;
    seats::end_holds(conn, &expired, HoldState::Expired).await?;
    seats::clear_seat_holds(conn, &held).await?;
    Ok(i32::try_from(released.len())?)
}

/// Cancels and refunds every confirmed reservation of the date; returns how many.
async fn refund_reservations(
    conn: &mut PgConnection,
    date_id: Uuid,
    now: DateTime<Utc>,
) -> anyhow::Result<i32> {
    let reservations = refunds::lock_confirmed_of_date(conn, date_id).await?;
    let refunds: Vec<Refund> = reservations
        .iter()
        .map(|reservation| refund(reservation, RefundCause::DateCanceled, now))
        .collect();
    refunds::write(conn, &refunds).await?;
    Ok(i32::try_from(refunds.len())?)
}
