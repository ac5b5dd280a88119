//! Seats and holds. A seat's current hold lives on the seat row, so taking a seat is one conditional
//! UPDATE; the `holds` rows keep each hold's history.
//!
//! Lock order everywhere: `holds` rows, then `users`, then `seats` (payments, releases and the sweeper). A
//! new hold locks only its seat and inserts a fresh hold row, so it never waits on another hold's row.

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::seats::{HoldFacts, HoldState};
use sqlx::PgConnection;
use uuid::Uuid;

/// What a HOLD needs from the waiting room and the user's other holds.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct HoldTerms {
    pub hold_seconds: i32,
    pub live_holds: i64,
}

/// The hold length of the concert and how many live holds the user has on the date; `None` when the
/// concert has no waiting room.
pub(crate) async fn hold_terms(
    conn: &mut PgConnection,
    concert_id: Uuid,
    date_id: Uuid,
    user_id: Uuid,
) -> anyhow::Result<Option<HoldTerms>> {
    sqlx::query_as(
        "SELECT w.hold_seconds,
                (SELECT count(*) FROM holds h
                 WHERE h.user_id = $3 AND h.date_id = $2 AND h.state = 'HELD' AND h.expires_at > now()) AS live_holds
         FROM waiting_rooms w WHERE w.concert_id = $1",
    )
    .bind(concert_id)
    .bind(date_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
    .context("reading hold terms")
}

/// A hold to take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewHold {
    pub hold_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub hold_seconds: i32,
}

/// The seat as the hold took it.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct TakenSeat {
    pub price: i64,
    pub expires_at: DateTime<Utc>,
}

/// Takes the seat if it is free (not sold, and no hold or a lapsed one) and on a date of the concert, and
/// records the hold, in one statement. `None` when the seat could not be taken.
///
/// The lapsed hold the seat may still name is left alone: the sweeper marks it EXPIRED. Touching it here
/// would lock a hold row after a seat row, the opposite order to the sweeper's, and could deadlock.
pub(crate) async fn take_seat(
    conn: &mut PgConnection,
    hold: &NewHold,
) -> anyhow::Result<Option<TakenSeat>> {
    sqlx::query_as(
        "WITH taken AS (
             UPDATE seats s
             SET hold_id = $1, held_by = $2, hold_expires_at = now() + make_interval(secs => $6)
             FROM concert_dates d
             WHERE s.date_id = $4 AND s.seat_no = $5 AND d.date_id = s.date_id AND d.concert_id = $3
               AND s.reservation_id IS NULL
               AND (s.hold_expires_at IS NULL OR s.hold_expires_at <= now())
             RETURNING s.price, s.hold_expires_at)
         INSERT INTO holds (hold_id, user_id, concert_id, date_id, seat_no, price, state, created_at, expires_at)
         SELECT $1, $2, $3, $4, $5, price, 'HELD', now(), hold_expires_at FROM taken
         RETURNING price, expires_at",
    )
    .bind(hold.hold_id)
    .bind(hold.user_id)
    .bind(hold.concert_id)
    .bind(hold.date_id)
    .bind(hold.seat_no)
    .bind(f64::from(hold.hold_seconds))
    .fetch_optional(conn)
    .await
    .context("taking the seat")
}

/// Why a seat could not be taken: which of date and seat exist for the concert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeatLookup {
    /// No such date, or a date of another concert.
    NoDate,
    /// The date is the concert's but has no such seat.
    NoSeat,
    /// The seat exists: it is held or sold.
    Exists,
}

/// Tells a missing date or seat from a taken seat, after [`take_seat`] found nothing to take.
pub(crate) async fn look_up_seat(
    conn: &mut PgConnection,
    concert_id: Uuid,
    date_id: Uuid,
    seat_no: i32,
) -> anyhow::Result<SeatLookup> {
    let (date_is_concerts, seat_exists): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM concert_dates WHERE date_id = $2 AND concert_id = $1),
                EXISTS (SELECT 1 FROM seats WHERE date_id = $2 AND seat_no = $3)",
    )
    .bind(concert_id)
    .bind(date_id)
    .bind(seat_no)
    .fetch_one(conn)
    .await
    .context("looking up the seat")?;
    Ok(match (date_is_concerts, seat_exists) {
        (false, _) => SeatLookup::NoDate,
        (true, false) => SeatLookup::NoSeat,
        (true, true) => SeatLookup::Exists,
    })
}

/// A hold row, locked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockedHold {
    pub facts: HoldFacts,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    user_id: Uuid,
    concert_id: Uuid,
    date_id: Uuid,
    seat_no: i32,
    price: i64,
    state: String,
    expires_at: DateTime<Utc>,
}

/// Locks the hold row (`FOR UPDATE`) so the decision taken on it holds until commit.
pub(crate) async fn lock_hold(
    conn: &mut PgConnection,
    hold_id: Uuid,
) -> anyhow::Result<Option<LockedHold>> {
    let row: Option<HoldRow> = sqlx::query_as(
        "SELECT user_id, concert_id, date_id, seat_no, price, state, expires_at
         FROM holds WHERE hold_id = $1 FOR UPDATE",
    )
    .bind(hold_id)
    .fetch_optional(conn)
    .await
    .context("locking the hold")?;
    row.map(|r| {
        let state = HoldState::parse(&r.state)
            .with_context(|| format!("hold {hold_id} has unknown state {:?}", r.state))?;
        Ok(LockedHold {
            facts: HoldFacts {
                owner: r.user_id,
                state,
                expires_at: r.expires_at,
            },
            concert_id: r.concert_id,
            date_id: r.date_id,
            seat_no: r.seat_no,
            price: r.price,
        })
    })
    .transpose()
}

/// Ends a live hold (RELEASED or PAID). Returns whether it was still HELD.
pub(crate) async fn end_hold(
    conn: &mut PgConnection,
    hold_id: Uuid,
    state: HoldState,
) -> anyhow::Result<bool> {
    let ended = sqlx::query(
        "UPDATE holds SET state = $2, ended_at = now() WHERE hold_id = $1 AND state = 'HELD'",
    )
    .bind(hold_id)
    .bind(state.as_str())
    .execute(conn)
    .await
    .context("ending the hold")?;
    Ok(ended.rows_affected() == 1)
}

/// Frees the seat, but only while it still names this hold (a later hold may have taken it since).
pub(crate) async fn clear_seat_hold(
    conn: &mut PgConnection,
    date_id: Uuid,
    seat_no: i32,
    hold_id: Uuid,
) -> anyhow::Result<bool> {
    let cleared = sqlx::query(
        "UPDATE seats SET hold_id = NULL, held_by = NULL, hold_expires_at = NULL
         WHERE date_id = $1 AND seat_no = $2 AND hold_id = $3",
    )
    .bind(date_id)
    .bind(seat_no)
    .bind(hold_id)
    .execute(conn)
    .await
    .context("clearing the seat's hold")?;
    Ok(cleared.rows_affected() == 1)
}

/// Marks up to `limit` lapsed holds EXPIRED and frees the seats that still name them. Holds locked by a
/// payment or release in flight are skipped; they are judged by their deadline anyway. Returns how many
/// holds were expired.
pub(crate) async fn expire_lapsed_holds(
    conn: &mut PgConnection,
    limit: i64,
) -> anyhow::Result<u64> {
    // The sweeper only tidies; rather than queue behind a command batch holding a seat, it gives up and
    // tries again next round (and can never be the one that makes a batch wait in a deadlock).
    sqlx::query("SET LOCAL lock_timeout = '500ms'")
        .execute(&mut *conn)
        .await
        .context("setting lock_timeout")?;
    let expired: Vec<(Uuid, Uuid, i32)> = sqlx::query_as(
        "WITH lapsed AS (
             SELECT hold_id FROM holds
             WHERE state = 'HELD' AND expires_at <= now()
             ORDER BY expires_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         UPDATE holds h SET state = 'EXPIRED', ended_at = now()
         FROM lapsed WHERE h.hold_id = lapsed.hold_id
         RETURNING h.hold_id, h.date_id, h.seat_no",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("expiring lapsed holds")?;
    if expired.is_empty() {
        return Ok(0);
    }
    let (holds, dates, seats): (Vec<Uuid>, Vec<Uuid>, Vec<i32>) = expired.into_iter().fold(
        (Vec::new(), Vec::new(), Vec::new()),
        |(mut h, mut d, mut s), (hold, date, seat)| {
            h.push(hold);
            d.push(date);
            s.push(seat);
            (h, d, s)
        },
    );
    sqlx::query(
        "UPDATE seats s SET hold_id = NULL, held_by = NULL, hold_expires_at = NULL
         FROM UNNEST($1::uuid[], $2::uuid[], $3::int[]) AS t(hold_id, date_id, seat_no)
         WHERE s.date_id = t.date_id AND s.seat_no = t.seat_no AND s.hold_id = t.hold_id",
    )
    .bind(&holds)
    .bind(&dates)
    .bind(&seats)
    .execute(conn)
    .await
    .context("freeing the seats of expired holds")?;
    Ok(holds.len() as u64)
}
