//! RELEASE: the user gives a held seat back before its deadline.

use anyhow::bail;
use chrono::{DateTime, Utc};
use concert_core::commands::ReleaseResult;
use concert_core::seats::{check_releasable, HoldState};
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{hold_refusal, Decision};
use crate::store::seats;

/// Ends the hold and frees its seat, if the hold is the user's and still live at `now`.
pub(crate) async fn release(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    user_id: Uuid,
    date_id: Uuid,
    hold_id: Uuid,
) -> anyhow::Result<Decision<ReleaseResult>> {
    // A hold on another date than the command names is not this command's to touch.
    let hold = seats::lock_hold(conn, hold_id)
        .await?
        .filter(|h| h.date_id == date_id);
    if let Err(code) = check_releasable(hold.map(|h| h.facts), user_id, now) {
        return Ok(Err(hold_refusal(code, hold_id)));
    }
    let Some(hold) = hold else {
        bail!("hold {hold_id} passed the release check without a row")
    };
    if !seats::end_hold(conn, hold_id, HoldState::Released).await? {
        bail!("hold {hold_id} was live when locked but could not be ended");
    }
    seats::clear_seat_hold(conn, hold.date_id, hold.seat_no, hold_id).await?;
    Ok(Ok(ReleaseResult {
        hold_id,
        date_id: hold.date_id,
        seat_no: hold.seat_no,
        released_at: now,
    }))
}
