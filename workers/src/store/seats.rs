//! Seats and holds. A seat's current hold lives on the seat row, so taking a seat is one conditional
//! UPDATE; the `holds` rows keep each hold's history.
//!
//! Lock order everywhere: `holds` rows, then `users`, then `seats` (payments, releases and the sweeper). New
//! holds lock only their seats and insert fresh hold rows, so they never wait on another hold's row.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::seats::{HoldFacts, HoldState};
use sqlx::PgConnection;
use uuid::Uuid;

/// Hold length (`hold_seconds`) of each of these concerts that has a waiting room.
pub(crate) async fn hold_seconds(
    conn: &mut PgConnection,
    concert_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, i32>> {
    let rows: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT concert_id, hold_seconds FROM waiting_rooms WHERE concert_id = ANY($1)",
    )
    .bind(concert_ids)
    .fetch_all(conn)
    .await
    .context("reading hold lengths")?;
    Ok(rows.into_iter().collect())
}

/// Live holds (HELD, deadline ahead) per (user, date), for these pairs.
pub(crate) async fn live_hold_counts(
    conn: &mut PgConnection,
    pairs: &[(Uuid, Uuid)],
) -> anyhow::Result<HashMap<(Uuid, Uuid), i64>> {
    let (users, dates): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let rows: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
        "SELECT h.user_id, h.date_id, count(*)
         FROM holds h
         JOIN (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::uuid[])) AS w(user_id, date_id)
           ON h.user_id = w.user_id AND h.date_id = w.date_id
         WHERE h.state = 'HELD' AND h.expires_at > now()
         GROUP BY h.user_id, h.date_id",
    )
    .bind(&users)
    .bind(&dates)
    .fetch_all(conn)
    .await
    .context("counting live holds")?;
    Ok(rows.into_iter().map(|(u, d, n)| ((u, d), n)).collect())
}

/// The concert each of these dates belongs to (dates that do not exist are absent).
pub(crate) async fn date_concerts(
    conn: &mut PgConnection,
    date_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, Uuid>> {
    let rows: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT date_id, concert_id FROM concert_dates WHERE date_id = ANY($1)")
            .bind(date_ids)
            .fetch_all(conn)
            .await
            .context("reading dates")?;
    Ok(rows.into_iter().collect())
}

/// A seat as a run of holds sees it, locked.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct SeatForHold {
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub sold: bool,
    pub hold_expires_at: Option<DateTime<Utc>>,
}

/// Locks these seats (those that exist) in one statement, in (date, seat) order so that two transactions
/// locking overlapping sets cannot deadlock.
pub(crate) async fn lock_seats(
    conn: &mut PgConnection,
    seats: &[(Uuid, i32)],
) -> anyhow::Result<HashMap<(Uuid, i32), SeatForHold>> {
    let (dates, numbers): (Vec<Uuid>, Vec<i32>) = seats.iter().copied().unzip();
    let rows: Vec<SeatForHold> = sqlx::query_as(
        "SELECT s.date_id, s.seat_no, s.price, s.reservation_id IS NOT NULL AS sold, s.hold_expires_at
         FROM seats s
         JOIN (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::int[])) AS w(date_id, seat_no)
           ON s.date_id = w.date_id AND s.seat_no = w.seat_no
         ORDER BY s.date_id, s.seat_no
         FOR UPDATE OF s",
    )
    .bind(&dates)
    .bind(&numbers)
    .fetch_all(conn)
    .await
    .context("locking seats")?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.date_id, r.seat_no), r))
        .collect())
}

/// A hold decided and about to be written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewHold {
    pub hold_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub expires_at: DateTime<Utc>,
}

/// Writes decided holds: points each seat at its hold and records the holds, two statements for the lot.
///
/// The seat update repeats the "free" condition, so the database, not only the decision, guarantees that no
/// seat gets two live holds; fewer rows than holds is an error that rolls the batch back. The lapsed hold a
/// seat may still name is left alone: the sweeper marks it EXPIRED (touching it here would lock a hold row
/// after a seat row, the opposite order to the sweeper's, and could deadlock).
pub(crate) async fn write_holds(conn: &mut PgConnection, holds: &[NewHold]) -> anyhow::Result<()> {
    if holds.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&NewHold) -> Uuid| holds.iter().map(f).collect::<Vec<_>>();
    let (hold_ids, users, concerts, dates) = (
        column(|h| h.hold_id),
        column(|h| h.user_id),
        column(|h| h.concert_id),
        column(|h| h.date_id),
    );
    let seat_nos: Vec<i32> = holds.iter().map(|h| h.seat_no).collect();
    let prices: Vec<i64> = holds.iter().map(|h| h.price).collect();
    let deadlines: Vec<DateTime<Utc>> = holds.iter().map(|h| h.expires_at).collect();
    let taken = sqlx::query(
        "UPDATE seats s SET hold_id = w.hold_id, held_by = w.user_id, hold_expires_at = w.expires_at
         FROM UNNEST($1::uuid[], $2::int[], $3::uuid[], $4::uuid[], $5::timestamptz[])
              AS w(date_id, seat_no, hold_id, user_id, expires_at)
         WHERE s.date_id = w.date_id AND s.seat_no = w.seat_no
           AND s.reservation_id IS NULL
           AND (s.hold_expires_at IS NULL OR s.hold_expires_at <= now())",
    )
    .bind(&dates)
    .bind(&seat_nos)
    .bind(&hold_ids)
    .bind(&users)
    .bind(&deadlines)
    .execute(&mut *conn)
    .await
    .context("taking seats")?
    .rows_affected();
    anyhow::ensure!(
        taken == holds.len() as u64,
        "{taken} of {} seats decided free could be taken",
        holds.len()
    );
    sqlx::query(
        "INSERT INTO holds (hold_id, user_id, concert_id, date_id, seat_no, price, state, created_at, expires_at)
         SELECT w.hold_id, w.user_id, w.concert_id, w.date_id, w.seat_no, w.price, 'HELD', now(), w.expires_at
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[], $7::timestamptz[])
              AS w(hold_id, user_id, concert_id, date_id, seat_no, price, expires_at)",
    )
    .bind(&hold_ids)
    .bind(&users)
    .bind(&concerts)
    .bind(&dates)
    .bind(&seat_nos)
    .bind(&prices)
    .bind(&deadlines)
    .execute(conn)
    .await
    .context("recording holds")?;
    Ok(())
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
