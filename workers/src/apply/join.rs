//! JOIN: a place in the concert's waiting room, in the order the log accepted the joins.

use concert_core::commands::JoinResult;
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{Decision, Refusal};
use crate::store::queue;

/// Gives the user a place at the back of the line, or the live place they already have. The room row
/// is locked first, so the admission ticker cannot move the frontier while this decides.
pub(crate) async fn join(
    conn: &mut PgConnection,
    user_id: Uuid,
    concert_id: Uuid,
) -> anyhow::Result<Decision<JoinResult>> {
    let Some(admitted_upto) = queue::lock_room_frontier(conn, concert_id).await? else {
        return Ok(Err(Refusal::new(
            ErrorCode::ConcertNotFound,
            format!("concert {concert_id} was not found"),
        )));
    };
    let place = match queue::live_place(conn, concert_id, user_id, admitted_upto).await? {
        Some(place) => place,
        None => queue::append_place(conn, concert_id, user_id).await?,
    };
    Ok(Ok(JoinResult {
        concert_id,
        seq: place.seq,
        joined_at: place.joined_at,
    }))
}
