//! Money and sales: balances, sold seats, and the rows a checkout leaves behind (a payment, a ledger entry
//! and an outbox event per checkout, a reservation per seat). Every function writes a whole run of
//! checkouts in one statement.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::commands::PaymentEvent;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// A checkout decided and about to be written: one payment of several seats.
#[derive(Debug, Clone)]
pub(crate) struct Checkout {
    /// The payment and its seats (`event.reservations`, first seat first); also the event the outbox
    /// publishes.
    pub event: PaymentEvent,
    /// The hold each seat of `event.reservations` is sold from, in the same order.
    pub hold_ids: Vec<Uuid>,
    /// The payer's balance after this checkout (and the ones before it in the run).
    pub balance_after: i64,
    /// The payer's place in line, completed by the checkout.
    pub queue_seq: i64,
}

/// Locks the payers' rows (in id order, so two transactions cannot deadlock) and returns their balances.
pub(crate) async fn lock_balances(
    conn: &mut PgConnection,
    user_ids: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, i64>> {
    let rows = sqlx::query!(
        "SELECT user_id, balance FROM users WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE",
        user_ids,
    )
    .fetch_all(conn)
    .await
    .context("locking balances")?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.balance)).collect())
}

/// Debits each payer the sum of their checkouts, conditionally (the balance must still cover it, and the
/// `balance_not_negative` check guards it again). Every payer must be debited: the rows were locked.
pub(crate) async fn debit(conn: &mut PgConnection, checkouts: &[Checkout]) -> anyhow::Result<()> {
    let mut totals: HashMap<Uuid, i64> = HashMap::new();
    for checkout in checkouts {
        *totals.entry(checkout.event.user_id).or_default() += checkout.event.amount;
    }
    let (users, amounts): (Vec<Uuid>, Vec<i64>) = totals.into_iter().unzip();
    let debited = sqlx::query!(
        "UPDATE users u SET balance = u.balance - t.amount
         FROM UNNEST($1::uuid[], $2::bigint[]) AS t(user_id, amount)
         WHERE u.user_id = t.user_id AND u.balance >= t.amount",
        &users,
        &amounts,
    )
    .execute(conn)
    .await
    .context("debiting balances")?
    .rows_affected();
    anyhow::ensure!(
        debited == users.len() as u64,
        "{debited} of {} payers decided solvent could be debited",
        users.len()
    );
    Ok(())
}

/// Marks every seat of the checkouts sold, each only while it still carries the hold it is sold from.
/// Every seat must be sold.
pub(crate) async fn sell_seats(
    conn: &mut PgConnection,
    checkouts: &[Checkout],
) -> anyhow::Result<()> {
    let seats = || {
        checkouts
            .iter()
            .flat_map(|c| c.event.reservations.iter().zip(&c.hold_ids))
    };
    let dates: Vec<Uuid> = seats().map(|(s, _)| s.date_id).collect();
    let seat_nos: Vec<i32> = seats().map(|(s, _)| s.seat_no).collect();
    let holds: Vec<Uuid> = seats().map(|(_, h)| *h).collect();
    let reservations: Vec<Uuid> = seats().map(|(s, _)| s.reservation_id).collect();
    let sold = sqlx::query!(
        "UPDATE seats s
         SET reservation_id = t.reservation_id, hold_id = NULL, held_by = NULL, hold_expires_at = NULL
         FROM UNNEST($1::uuid[], $2::int[], $3::uuid[], $4::uuid[])
              AS t(date_id, seat_no, hold_id, reservation_id)
         WHERE s.date_id = t.date_id AND s.seat_no = t.seat_no AND s.hold_id = t.hold_id
           AND s.reservation_id IS NULL",
        &dates,
        &seat_nos,
        &holds,
        &reservations,
    )
    .execute(conn)
    .await
    .context("marking seats sold")?
    .rows_affected();
    anyhow::ensure!(
        sold == holds.len() as u64,
        "{sold} of {} seats still carried the hold being paid",
        holds.len()
    );
    Ok(())
}

/// Writes what the checkouts leave behind, in one statement: per checkout a payment, a ledger entry and
/// an outbox event (keyed by the payment), per seat a reservation naming its payment. Ledger entries are
/// numbered in log order, so a payer's history reads in the order they paid. A checkout of free seats (sum
/// 0) changes no balance, so it gets no ledger entry.
pub(crate) async fn record(conn: &mut PgConnection, checkouts: &[Checkout]) -> anyhow::Result<()> {
    let column =
        |f: fn(&PaymentEvent) -> Uuid| checkouts.iter().map(|c| f(&c.event)).collect::<Vec<_>>();
    let (payment_ids, users, events) = (
        column(|e| e.payment_id),
        column(|e| e.user_id),
        column(|e| e.event_id),
    );
    let amounts: Vec<i64> = checkouts.iter().map(|c| c.event.amount).collect();
    let balances: Vec<i64> = checkouts.iter().map(|c| c.balance_after).collect();
    let types: Vec<&str> = checkouts
        .iter()
        .map(|c| c.event.event_type.as_str())
        .collect();
    let keys: Vec<String> = payment_ids.iter().map(Uuid::to_string).collect();
    let payloads: Vec<Value> = checkouts
        .iter()
        .map(|c| serde_json::to_value(&c.event).context("encoding a payment event"))
        .collect::<anyhow::Result<_>>()?;
    let paid_at: Vec<DateTime<Utc>> = checkouts.iter().map(|c| c.event.occurred_at).collect();

    let seats = || {
        checkouts.iter().flat_map(|c| {
            c.event
                .reservations
                .iter()
                .zip(&c.hold_ids)
                .map(move |(seat, hold_id)| (&c.event, seat, *hold_id))
        })
    };
    let seat_reservations: Vec<Uuid> = seats().map(|(_, s, _)| s.reservation_id).collect();
    let seat_payments: Vec<Uuid> = seats().map(|(e, _, _)| e.payment_id).collect();
    let seat_users: Vec<Uuid> = seats().map(|(e, _, _)| e.user_id).collect();
    let seat_concerts: Vec<Uuid> = seats().map(|(e, _, _)| e.concert_id).collect();
    let seat_dates: Vec<Uuid> = seats().map(|(_, s, _)| s.date_id).collect();
    let seat_nos: Vec<i32> = seats().map(|(_, s, _)| s.seat_no).collect();
    let seat_prices: Vec<i64> = seats().map(|(_, s, _)| s.price).collect();
    let seat_holds: Vec<Uuid> = seats().map(|(_, _, h)| h).collect();
    let seat_paid_at: Vec<DateTime<Utc>> = seats().map(|(e, _, _)| e.occurred_at).collect();
    // The event types are bound as `&[&str]` (the macro would want `&[String]`); the SQL is checked all
    // the same. Each reservation names its payment, which the same statement inserts: the foreign key is
    // checked at the statement's end.
    sqlx::query!(
        "WITH checkout AS (
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::uuid[], $6::text[],
                                  $7::text[], $8::jsonb[], $9::timestamptz[])
                 WITH ORDINALITY AS t(payment_id, user_id, amount, balance_after, event_id, event_type,
                                      event_key, payload, paid_at, ord)),
         payment AS (
             INSERT INTO payments (payment_id, user_id, amount, paid_at)
             SELECT payment_id, user_id, amount, paid_at FROM checkout),
         reservation AS (
             INSERT INTO reservations (reservation_id, payment_id, user_id, concert_id, date_id, seat_no, price,
                                       hold_id, paid_at)
             SELECT * FROM UNNEST($10::uuid[], $11::uuid[], $12::uuid[], $13::uuid[], $14::uuid[], $15::int[],
                                  $16::bigint[], $17::uuid[], $18::timestamptz[])),
         ledger AS (
             INSERT INTO balance_ledger (user_id, kind, amount, balance_after, payment_id, at)
             SELECT user_id, 'PAYMENT', amount, balance_after, payment_id, paid_at FROM checkout
             WHERE amount > 0 ORDER BY ord)
         INSERT INTO outbox (event_id, event_type, event_key, payload)
         SELECT event_id, event_type, event_key, payload FROM checkout ORDER BY ord",
        &payment_ids,
        &users,
        &amounts,
        &balances,
        &events,
        &types[..] as &[&str],
        &keys,
        &payloads,
        &paid_at,
        &seat_reservations,
        &seat_payments,
        &seat_users,
        &seat_concerts,
        &seat_dates,
        &seat_nos,
        &seat_prices,
        &seat_holds,
        &seat_paid_at,
    )
    .execute(conn)
    .await
    .context("recording payments")?;
    Ok(())
}
