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
    let rows = sqlx::query!(
        "SELECT concert_id, hold_seconds FROM waiting_rooms WHERE concert_id = ANY($1)",
        concert_ids,
    )
    .fetch_all(conn)
    .await
    .context("reading hold lengths")?;
    Ok(rows
        .into_iter()
        .map(|r| (r.concert_id, r.hold_seconds))
        .collect())
}

/// Live holds (HELD, deadline ahead) per (user, date), for these pairs.
///
/// One probe of `holds_live_by_user` per pair, by construction: the count is a subquery run once per
/// pair, so the planner cannot turn it into one read of every live hold matched against all the pairs.
/// It did, as a join: without statistics it guesses one hold in two hundred is HELD, takes the
/// deadline index for a three-row read, and reads every live hold once per batch. The deadline test
/// is a FILTER of the count, not a condition of the probe, for the same reason: with a few hundred holds
/// the planner costed `holds_live_by_deadline` (the smaller index) below the per-user one, even per pair
/// (`workers/tests/apply/plans.rs`).
pub(crate) async fn live_hold_counts(
    conn: &mut PgConnection,
    pairs: &[(Uuid, Uuid)],
) -> anyhow::Result<HashMap<(Uuid, Uuid), i64>> {
    let (users, dates): (Vec<Uuid>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"SELECT w.user_id AS "user_id!", w.date_id AS "date_id!",
                (SELECT count(*) FILTER (WHERE h.expires_at > now()) FROM holds h
                 WHERE h.user_id = w.user_id AND h.date_id = w.date_id AND h.state = 'HELD') AS "live!"
         FROM (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::uuid[])) AS w(user_id, date_id)"#,
        &users,
        &dates,
    )
    .fetch_all(conn)
    .await
    .context("counting live holds")?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.user_id, r.date_id), r.live))
        .collect())
}

/// A concert date as a run of commands sees it.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct DateFacts {
    pub concert_id: Uuid,
    pub starts_at: DateTime<Utc>,
    /// When the organizer cancelled it, if they did.
    pub canceled_at: Option<DateTime<Utc>>,
}

/// The concert, start and cancellation of each of these dates (dates that do not exist are absent).
pub(crate) async fn dates(
    conn: &mut PgConnection,
    date_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, DateFacts>> {
    let rows = sqlx::query!(
        "SELECT date_id, concert_id, starts_at, canceled_at FROM concert_dates WHERE date_id = ANY($1)",
        date_ids,
    )
    .fetch_all(conn)
    .await
    .context("reading dates")?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.date_id,
                DateFacts {
                    concert_id: r.concert_id,
                    starts_at: r.starts_at,
                    canceled_at: r.canceled_at,
                },
            )
        })
        .collect())
}

/// The end of the active window (`active_until`) of each of these places in line (concert, seq) that has
/// been admitted; places not admitted are absent.
pub(crate) async fn active_windows(
    conn: &mut PgConnection,
    places: &[(Uuid, i64)],
) -> anyhow::Result<HashMap<(Uuid, i64), DateTime<Utc>>> {
    let (concerts, seqs): (Vec<Uuid>, Vec<i64>) = places.iter().copied().unzip();
    let rows = sqlx::query!(
        r#"SELECT w.concert_id AS "concert_id!", w.seq AS "seq!", a.active_until AS "active_until!"
         FROM (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::bigint[])) AS w(concert_id, seq)
         -- steps count in line numbers (a drawn place's differs from its seq; none yet: not admitted)
         JOIN queue_entries q ON q.concert_id = w.concert_id AND q.seq = w.seq
         JOIN LATERAL (
             SELECT active_until FROM admissions a
             WHERE a.concert_id = w.concert_id AND a.upto_seq >= q.line_no AND a.from_seq <= q.line_no
             ORDER BY a.upto_seq
             LIMIT 1) a ON true"#,
        &concerts,
        &seqs,
    )
    .fetch_all(conn)
    .await
    .context("reading active windows")?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.concert_id, r.seq), r.active_until))
        .collect())
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
    let rows: Vec<SeatForHold> = sqlx::query_as!(
        SeatForHold,
        r#"SELECT s.date_id, s.seat_no, s.price, s.reservation_id IS NOT NULL AS "sold!", s.hold_expires_at
         FROM seats s
         JOIN (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::int[])) AS w(date_id, seat_no)
           ON s.date_id = w.date_id AND s.seat_no = w.seat_no
         ORDER BY s.date_id, s.seat_no
         FOR UPDATE OF s"#,
        &dates,
        &numbers,
    )
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
    let taken = sqlx::query!(
        "UPDATE seats s SET hold_id = w.hold_id, held_by = w.user_id, hold_expires_at = w.expires_at
         FROM UNNEST($1::uuid[], $2::int[], $3::uuid[], $4::uuid[], $5::timestamptz[])
              AS w(date_id, seat_no, hold_id, user_id, expires_at)
         WHERE s.date_id = w.date_id AND s.seat_no = w.seat_no
           AND s.reservation_id IS NULL
           AND (s.hold_expires_at IS NULL OR s.hold_expires_at <= now())",
        &dates,
        &seat_nos,
        &hold_ids,
        &users,
        &deadlines,
    )
    .execute(&mut *conn)
    .await
    .context("taking seats")?
    .rows_affected();
    anyhow::ensure!(
        taken == holds.len() as u64,
        "{taken} of {} seats decided free could be taken",
        holds.len()
    );
    sqlx::query!(
        "INSERT INTO holds (hold_id, user_id, concert_id, date_id, seat_no, price, state, created_at, expires_at)
         SELECT w.hold_id, w.user_id, w.concert_id, w.date_id, w.seat_no, w.price, 'HELD', now(), w.expires_at
         FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[], $7::timestamptz[])
              AS w(hold_id, user_id, concert_id, date_id, seat_no, price, expires_at)",
        &hold_ids,
        &users,
        &concerts,
        &dates,
        &seat_nos,
        &prices,
        &deadlines,
    )
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
    hold_id: Uuid,
    user_id: Uuid,
    concert_id: Uuid,
    date_id: Uuid,
    seat_no: i32,
    price: i64,
    state: String,
    expires_at: DateTime<Utc>,
}

/// Locks these hold rows (`FOR UPDATE`, in id order so two transactions cannot deadlock), so decisions
/// taken on them hold until commit. Holds that do not exist are absent.
pub(crate) async fn lock_holds(
    conn: &mut PgConnection,
    hold_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, LockedHold>> {
    let rows: Vec<HoldRow> = sqlx::query_as!(
        HoldRow,
        "SELECT hold_id, user_id, concert_id, date_id, seat_no, price, state, expires_at
         FROM holds WHERE hold_id = ANY($1)
         ORDER BY hold_id
         FOR UPDATE",
        hold_ids,
    )
    .fetch_all(conn)
    .await
    .context("locking holds")?;
    rows.into_iter()
        .map(|r| {
            let state = HoldState::parse(&r.state)
                .with_context(|| format!("hold {} has unknown state {:?}", r.hold_id, r.state))?;
            let hold = LockedHold {
                facts: HoldFacts {
                    owner: r.user_id,
                    state,
                    expires_at: r.expires_at,
                },
                concert_id: r.concert_id,
                date_id: r.date_id,
                seat_no: r.seat_no,
                price: r.price,
            };
            Ok((r.hold_id, hold))
        })
        .collect()
}

/// Ends these live holds (RELEASED or PAID) in one statement. The caller decided on rows it locked with
/// [`lock_holds`] and saw HELD, so every one of them must be there: fewer rows is a broken invariant and
/// rolls the batch back.
///
/// By id alone, not `AND state = 'HELD'`: that condition lets the planner read the statement through a
/// partial index on live holds, and without statistics it guesses one hold in two hundred is live, so it
/// read every live hold to end twenty of them (`workers/tests/apply/plans.rs`).
pub(crate) async fn end_holds(
    conn: &mut PgConnection,
    hold_ids: &[Uuid],
    state: HoldState,
) -> anyhow::Result<()> {
    if hold_ids.is_empty() {
        return Ok(());
    }
    let ended = sqlx::query!(
        "UPDATE holds SET state = $2, ended_at = now() WHERE hold_id = ANY($1)",
        hold_ids,
        state.as_str(),
    )
    .execute(conn)
    .await
    .context("ending holds")?
    .rows_affected();
    anyhow::ensure!(
        ended == hold_ids.len() as u64,
        "{ended} of {} holds locked could be ended",
        hold_ids.len()
    );
    Ok(())
}

/// Frees these seats, each only while it still names the given hold (a later hold may have taken it
/// since), in one statement.
pub(crate) async fn clear_seat_holds(
    conn: &mut PgConnection,
    seats: &[(Uuid, i32, Uuid)],
) -> anyhow::Result<()> {
    if seats.is_empty() {
        return Ok(());
    }
    let dates: Vec<Uuid> = seats.iter().map(|s| s.0).collect();
    let numbers: Vec<i32> = seats.iter().map(|s| s.1).collect();
    let holds: Vec<Uuid> = seats.iter().map(|s| s.2).collect();
    sqlx::query!(
        "UPDATE seats s SET hold_id = NULL, held_by = NULL, hold_expires_at = NULL
         FROM UNNEST($1::uuid[], $2::int[], $3::uuid[]) AS t(date_id, seat_no, hold_id)
         WHERE s.date_id = t.date_id AND s.seat_no = t.seat_no AND s.hold_id = t.hold_id",
        &dates,
        &numbers,
        &holds,
    )
    .execute(conn)
    .await
    .context("clearing the seats' holds")?;
    Ok(())
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
    sqlx::query!("SET LOCAL lock_timeout = '500ms'")
        .execute(&mut *conn)
        .await
        .context("setting lock_timeout")?;
    let expired = sqlx::query!(
        "WITH lapsed AS (
             SELECT hold_id FROM holds
             WHERE state = 'HELD' AND expires_at <= now()
             ORDER BY expires_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED)
         UPDATE holds h SET state = 'EXPIRED', ended_at = now()
         FROM lapsed WHERE h.hold_id = lapsed.hold_id
         RETURNING h.hold_id, h.date_id, h.seat_no",
        limit,
    )
    .fetch_all(&mut *conn)
    .await
    .context("expiring lapsed holds")?;
    if expired.is_empty() {
        return Ok(0);
    }
    let freed: Vec<(Uuid, i32, Uuid)> = expired
        .iter()
        .map(|r| (r.date_id, r.seat_no, r.hold_id))
        .collect();
    clear_seat_holds(conn, &freed).await?;
    Ok(freed.len() as u64)
}

/// A hold in state HELD, as a checkout finds the payer's other holds.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct HeldSeat {
    pub hold_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// The holds in state HELD of each of these (user, concert) pairs, on any date, lapsed ones included (the
/// caller compares deadlines: a deadline test here would let the planner read every live hold through
/// `holds_live_by_deadline`, as `live_hold_counts` explains). Not locked: the caller locks those it changes.
/// One probe of `holds_live_by_user` per pair.
pub(crate) async fn held_by(
    conn: &mut PgConnection,
    owners: &[(Uuid, Uuid)],
) -> anyhow::Result<Vec<HeldSeat>> {
    let (users, concerts): (Vec<Uuid>, Vec<Uuid>) = owners.iter().copied().unzip();
    sqlx::query_as!(
        HeldSeat,
        r#"SELECT h.hold_id AS "hold_id!", h.user_id AS "user_id!", h.concert_id AS "concert_id!",
                h.date_id AS "date_id!", h.expires_at AS "expires_at!"
         FROM (SELECT DISTINCT * FROM UNNEST($1::uuid[], $2::uuid[])) AS w(user_id, concert_id)
         CROSS JOIN LATERAL (
             SELECT h.hold_id, h.user_id, h.concert_id, h.date_id, h.expires_at FROM holds h
             WHERE h.user_id = w.user_id AND h.state = 'HELD' AND h.concert_id = w.concert_id
             OFFSET 0) h"#,
        &users,
        &concerts,
    )
    .fetch_all(conn)
    .await
    .context("finding the payers' holds")
}
