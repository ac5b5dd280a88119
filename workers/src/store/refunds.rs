//! Cancellations and refunds: the reservations a cancel locks, and the rows a refund changes or leaves
//! behind (the reservation CANCELED and its seat free, the money back on the balance, a refund, a REFUND
//! ledger entry and a `payment.refunded` event). Every function writes a whole run of refunds at once.
//!
//! Lock order: reservations, then their seats, then users (in id order). Seats belong to one date, so only
//! its partition's commands take them; users are what two partitions' transactions may share.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::commands::RefundEvent;
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

/// A reservation as a cancel sees it, locked.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub(crate) struct LockedReservation {
    pub reservation_id: Uuid,
    pub payment_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub canceled: bool,
}

/// Locks these reservations (those that exist; in id order, so two transactions cannot deadlock).
pub(crate) async fn lock_reservations(
    conn: &mut PgConnection,
    reservation_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, LockedReservation>> {
    let rows = sqlx::query_as!(
        LockedReservation,
        r#"SELECT reservation_id, payment_id, user_id, concert_id, date_id, seat_no, price,
                  status = 'CANCELED' AS "canceled!"
         FROM reservations WHERE reservation_id = ANY($1)
         ORDER BY reservation_id
         FOR UPDATE"#,
        reservation_ids,
    )
    .fetch_all(conn)
    .await
    .context("locking reservations")?;
    Ok(rows.into_iter().map(|r| (r.reservation_id, r)).collect())
}

/// Locks every CONFIRMED reservation of a date, in id order.
pub(crate) async fn lock_confirmed_of_date(
    conn: &mut PgConnection,
    date_id: Uuid,
) -> anyhow::Result<Vec<LockedReservation>> {
    sqlx::query_as!(
        LockedReservation,
        r#"SELECT reservation_id, payment_id, user_id, concert_id, date_id, seat_no, price,
                  false AS "canceled!"
         FROM reservations WHERE date_id = $1 AND status = 'CONFIRMED'
         ORDER BY reservation_id
         FOR UPDATE"#,
        date_id,
    )
    .fetch_all(conn)
    .await
    .context("locking a date's reservations")
}

/// `cancel_cutoff_hours` of each of these concerts.
pub(crate) async fn cancel_cutoffs(
    conn: &mut PgConnection,
    concert_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, i32>> {
    let rows = sqlx::query!(
        "SELECT concert_id, cancel_cutoff_hours FROM waiting_rooms WHERE concert_id = ANY($1)",
        concert_ids,
    )
    .fetch_all(conn)
    .await
    .context("reading cancel cutoffs")?;
    Ok(rows
        .into_iter()
        .map(|r| (r.concert_id, r.cancel_cutoff_hours))
        .collect())
}

/// Who asked for a refund: `refunds.cause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefundCause {
    /// The user cancelled the reservation.
    Cancel,
    /// The organizer cancelled its date.
    DateCanceled,
}

impl RefundCause {
    fn as_str(self) -> &'static str {
        match self {
            Self::Cancel => "CANCEL",
            Self::DateCanceled => "DATE_CANCELED",
        }
    }
}

/// A refund decided and about to be written.
#[derive(Debug, Clone)]
pub(crate) struct Refund {
    /// Everything about the refund; also the event the outbox publishes.
    pub event: RefundEvent,
    pub cause: RefundCause,
}

/// Writes decided refunds, in order: the reservations cancelled and their seats freed, the balances
/// credited, and the refunds, ledger entries and events recorded. Every reservation was locked and seen
/// CONFIRMED, so each must change: fewer rows is a broken invariant and rolls the batch back. A refund is
/// never refused for money, so nothing about a balance is read before it is credited.
pub(crate) async fn write(conn: &mut PgConnection, refunds: &[Refund]) -> anyhow::Result<()> {
    if refunds.is_empty() {
        return Ok(());
    }
    cancel_reservations(conn, refunds).await?;
    let balances_after = credit(conn, refunds).await?;
    record(conn, refunds, &balances_after).await
}

/// Marks the reservations CANCELED and frees their seats (each only while it still names the reservation),
/// in one statement.
async fn cancel_reservations(conn: &mut PgConnection, refunds: &[Refund]) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = refunds.iter().map(|r| r.event.reservation_id).collect();
    let at: Vec<DateTime<Utc>> = refunds.iter().map(|r| r.event.occurred_at).collect();
    let done = sqlx::query!(
        r#"WITH canceled AS (
               UPDATE reservations r SET status = 'CANCELED', canceled_at = t.at
               FROM UNNEST($1::uuid[], $2::timestamptz[]) AS t(reservation_id, at)
               WHERE r.reservation_id = t.reservation_id AND r.status = 'CONFIRMED'
               RETURNING r.reservation_id, r.date_id, r.seat_no),
           freed AS (
               UPDATE seats s SET reservation_id = NULL
               FROM canceled c
               WHERE s.date_id = c.date_id AND s.seat_no = c.seat_no AND s.reservation_id = c.reservation_id
               RETURNING s.seat_no)
           SELECT (SELECT count(*) FROM canceled) AS "canceled!", (SELECT count(*) FROM freed) AS "freed!""#,
        &ids,
        &at,
    )
    .fetch_one(conn)
    .await
    .context("cancelling reservations")?;
    let wanted = refunds.len() as i64;
    anyhow::ensure!(
        done.canceled == wanted && done.freed == wanted,
        "{} of {wanted} reservations decided CONFIRMED could be cancelled, {} of their seats freed",
        done.canceled,
        done.freed
    );
    Ok(())
}

/// Credits each user the sum of their refunds, in one statement that probes the users in id order (so two
/// transactions crediting or debiting the same users lock them in the same order), and returns each
/// refund's balance after it: the users' new balances, less the refunds after it in `refunds`. Every user
/// must be there (a reservation's user is a foreign key).
async fn credit(conn: &mut PgConnection, refunds: &[Refund]) -> anyhow::Result<Vec<i64>> {
    let mut totals: BTreeMap<Uuid, i64> = BTreeMap::new();
    for refund in refunds {
        *totals.entry(refund.event.user_id).or_default() += refund.event.amount;
    }
    let (users, amounts): (Vec<Uuid>, Vec<i64>) = totals.into_iter().unzip();
    let rows = sqlx::query!(
        "UPDATE users u SET balance = u.balance + t.amount
         FROM UNNEST($1::uuid[], $2::bigint[]) AS t(user_id, amount)
         WHERE u.user_id = t.user_id
         RETURNING u.user_id, u.balance",
        &users,
        &amounts,
    )
    .fetch_all(conn)
    .await
    .context("crediting refunds")?;
    anyhow::ensure!(
        rows.len() == users.len(),
        "{} of {} users refunded could be credited",
        rows.len(),
        users.len()
    );
    let mut balance: HashMap<Uuid, i64> =
        rows.into_iter().map(|r| (r.user_id, r.balance)).collect();
    let mut after = vec![0; refunds.len()];
    for (slot, refund) in after.iter_mut().zip(refunds).rev() {
        let running = balance
            .get_mut(&refund.event.user_id)
            .context("a credited user without a balance")?;
        *slot = *running;
        *running -= refund.event.amount;
    }
    Ok(after)
}

/// Records the refunds, their ledger entries (numbered in log order; a free seat's refund of 0 changes no
/// balance and gets none) and their events (keyed by the payment), in one statement.
async fn record(
    conn: &mut PgConnection,
    refunds: &[Refund],
    balances_after: &[i64],
) -> anyhow::Result<()> {
    let column =
        |f: fn(&RefundEvent) -> Uuid| refunds.iter().map(|r| f(&r.event)).collect::<Vec<_>>();
    let (refund_ids, reservations, payments, users, dates, events) = (
        column(|e| e.refund_id),
        column(|e| e.reservation_id),
        column(|e| e.payment_id),
        column(|e| e.user_id),
        column(|e| e.date_id),
        column(|e| e.event_id),
    );
    let amounts: Vec<i64> = refunds.iter().map(|r| r.event.amount).collect();
    let causes: Vec<&str> = refunds.iter().map(|r| r.cause.as_str()).collect();
    let at: Vec<DateTime<Utc>> = refunds.iter().map(|r| r.event.occurred_at).collect();
    let keys: Vec<String> = payments.iter().map(Uuid::to_string).collect();
    let payloads: Vec<Json<&RefundEvent>> = refunds.iter().map(|r| Json(&r.event)).collect();
    // The causes are bound as `&[&str]` (the macro would want `&[String]`); the SQL is checked all the same.
    sqlx::query!(
        "WITH refund AS (
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::bigint[],
                                  $7::text[], $8::timestamptz[], $9::bigint[], $10::uuid[], $11::text[],
                                  $12::jsonb[])
                 WITH ORDINALITY AS t(refund_id, reservation_id, payment_id, user_id, date_id, amount, cause,
                                      refunded_at, balance_after, event_id, event_key, payload, ord)),
         recorded AS (
             INSERT INTO refunds (refund_id, reservation_id, payment_id, user_id, date_id, amount, cause, refunded_at)
             SELECT refund_id, reservation_id, payment_id, user_id, date_id, amount, cause, refunded_at FROM refund),
         ledger AS (
             INSERT INTO balance_ledger (user_id, kind, amount, balance_after, payment_id, at)
             SELECT user_id, 'REFUND', amount, balance_after, payment_id, refunded_at FROM refund
             WHERE amount > 0 ORDER BY ord)
         INSERT INTO outbox (event_id, event_type, event_key, payload)
         SELECT event_id, $13, event_key, payload FROM refund ORDER BY ord",
        &refund_ids,
        &reservations,
        &payments,
        &users,
        &dates,
        &amounts,
        &causes[..] as &[&str],
        &at,
        balances_after,
        &events,
        &keys,
        &payloads[..] as &[Json<&RefundEvent>],
        RefundEvent::TYPE,
    )
    .execute(conn)
    .await
    .context("recording refunds")?;
    Ok(())
}
