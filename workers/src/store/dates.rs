//! A concert date as its cancel sees it: its row (locked), the seats its live holds sit on, and the record
//! of the cancel that closed it.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A date's row, locked, with the outcome of the cancel that closed it if one did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockedDate {
    pub concert_id: Uuid,
    pub canceled: Option<DateCancel>,
}

/// What the cancel of a date did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DateCancel {
    pub canceled_at: DateTime<Utc>,
    pub holds_released: i32,
    pub reservations_refunded: i32,
}

/// Locks a date's row (`FOR UPDATE`): two cancels of one date, even from two processes, are applied one
/// after the other, and the second finds the first's record. `None` if there is no such date.
pub(crate) async fn lock_date(
    conn: &mut PgConnection,
    date_id: Uuid,
) -> anyhow::Result<Option<LockedDate>> {
    let row = sqlx::query!(
        "SELECT concert_id, canceled_at, canceled_holds, canceled_refunds FROM concert_dates
         WHERE date_id = $1 FOR UPDATE",
        date_id,
    )
    .fetch_optional(conn)
    .await
    .context("locking a date")?;
    Ok(row.map(|r| LockedDate {
        concert_id: r.concert_id,
        canceled: match (r.canceled_at, r.canceled_holds, r.canceled_refunds) {
            (Some(canceled_at), Some(holds_released), Some(reservations_refunded)) => {
                Some(DateCancel {
                    canceled_at,
                    holds_released,
                    reservations_refunded,
                })
            }
            _ => None,
        },
    }))
}

/// Records the cancel of a date: from now on it takes no holds or payments.
pub(crate) async fn close(
    conn: &mut PgConnection,
    date_id: Uuid,
    cancel: &DateCancel,
) -> anyhow::Result<()> {
    let closed = sqlx::query!(
        "UPDATE concert_dates SET canceled_at = $2, canceled_holds = $3, canceled_refunds = $4
         WHERE date_id = $1 AND canceled_at IS NULL",
        date_id,
        cancel.canceled_at,
        cancel.holds_released,
        cancel.reservations_refunded,
    )
    .execute(conn)
    .await
    .context("closing a date")?
    .rows_affected();
    anyhow::ensure!(
        closed == 1,
        "date {date_id}, locked open, could not be closed"
    );
    Ok(())
}

/// The holds the seats of a date name (live or lapsed), with their seats.
pub(crate) async fn seat_holds(
    conn: &mut PgConnection,
    date_id: Uuid,
) -> anyhow::Result<Vec<(Uuid, i32, Uuid)>> {
    let rows = sqlx::query!(
        r#"SELECT seat_no, hold_id AS "hold_id!" FROM seats WHERE date_id = $1 AND hold_id IS NOT NULL"#,
        date_id,
    )
    .fetch_all(conn)
    .await
    .context("reading a date's held seats")?;
    Ok(rows
        .into_iter()
        .map(|r| (date_id, r.seat_no, r.hold_id))
        .collect())
}
