//! Money and sales: balances, sold seats, and the rows a payment leaves behind (reservation, payment,
//! ledger entry, outbox event). Every function writes a whole run of payments in one statement.

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use concert_core::commands::PaymentEvent;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

/// A payment decided and about to be written.
#[derive(Debug, Clone)]
pub(crate) struct Sale {
    /// Everything about the sale; also the event the outbox publishes.
    pub event: PaymentEvent,
    /// The payer's balance after this payment (and the ones before it in the run).
    pub balance_after: i64,
    /// The payer's place in line, completed by the payment.
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

/// Debits each payer the sum of their sales, conditionally (the balance must still cover it, and the
/// `balance_not_negative` check guards it again). Every payer must be debited: the rows were locked.
pub(crate) async fn debit(conn: &mut PgConnection, sales: &[Sale]) -> anyhow::Result<()> {
    let mut totals: HashMap<Uuid, i64> = HashMap::new();
    for sale in sales {
        *totals.entry(sale.event.user_id).or_default() += sale.event.amount;
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

/// Marks each sale's seat sold, only while it still carries the sale's hold. Every seat must be sold.
pub(crate) async fn sell_seats(conn: &mut PgConnection, sales: &[Sale]) -> anyhow::Result<()> {
    let column =
        |f: fn(&PaymentEvent) -> Uuid| sales.iter().map(|s| f(&s.event)).collect::<Vec<_>>();
    let (dates, holds, reservations) = (
        column(|e| e.date_id),
        column(|e| e.hold_id),
        column(|e| e.reservation_id),
    );
    let seat_nos: Vec<i32> = sales.iter().map(|s| s.event.seat_no).collect();
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
        sold == sales.len() as u64,
        "{sold} of {} seats still carried the hold being paid",
        sales.len()
    );
    Ok(())
}

/// Writes the reservations, payments, ledger entries and outbox events of the sales, in one statement.
/// Ledger entries are numbered in log order, so a payer's history reads in the order they paid. A free
/// seat (price 0) changes no balance, so it gets no ledger entry.
pub(crate) async fn record(conn: &mut PgConnection, sales: &[Sale]) -> anyhow::Result<()> {
    let column =
        |f: fn(&PaymentEvent) -> Uuid| sales.iter().map(|s| f(&s.event)).collect::<Vec<_>>();
    let (reservations, users, concerts, dates, holds, payments_ids, events) = (
        column(|e| e.reservation_id),
        column(|e| e.user_id),
        column(|e| e.concert_id),
        column(|e| e.date_id),
        column(|e| e.hold_id),
        column(|e| e.payment_id),
        column(|e| e.event_id),
    );
    let seat_nos: Vec<i32> = sales.iter().map(|s| s.event.seat_no).collect();
    let amounts: Vec<i64> = sales.iter().map(|s| s.event.amount).collect();
    let balances: Vec<i64> = sales.iter().map(|s| s.balance_after).collect();
    let types: Vec<&str> = sales.iter().map(|s| s.event.event_type.as_str()).collect();
    let keys: Vec<String> = reservations.iter().map(Uuid::to_string).collect();
    let payloads: Vec<Value> = sales
        .iter()
        .map(|s| serde_json::to_value(&s.event).context("encoding a payment event"))
        .collect::<anyhow::Result<_>>()?;
    let paid_at: Vec<DateTime<Utc>> = sales.iter().map(|s| s.event.occurred_at).collect();
    // The event types are bound as `&[&str]` (the macro would want `&[String]`); the SQL is checked all
    // the same.
    sqlx::query!(
        "WITH sale AS (
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[],
                                  $7::uuid[], $8::uuid[], $9::bigint[], $10::uuid[], $11::text[],
                                  $12::text[], $13::jsonb[], $14::timestamptz[])
                 WITH ORDINALITY AS t(reservation_id, user_id, concert_id, date_id, seat_no, amount,
                                      hold_id, payment_id, balance_after, event_id, event_type,
                                      event_key, payload, paid_at, ord)),
         reservation AS (
             INSERT INTO reservations (reservation_id, user_id, concert_id, date_id, seat_no, price, hold_id, paid_at)
             SELECT reservation_id, user_id, concert_id, date_id, seat_no, amount, hold_id, paid_at FROM sale),
         payment AS (
             INSERT INTO payments (payment_id, reservation_id, hold_id, user_id, amount, paid_at)
             SELECT payment_id, reservation_id, hold_id, user_id, amount, paid_at FROM sale),
         ledger AS (
             INSERT INTO balance_ledger (user_id, kind, amount, balance_after, payment_id, at)
             SELECT user_id, 'PAYMENT', amount, balance_after, payment_id, paid_at FROM sale
             WHERE amount > 0 ORDER BY ord)
         INSERT INTO outbox (event_id, event_type, event_key, payload)
         SELECT event_id, event_type, event_key, payload FROM sale ORDER BY ord",
        &reservations,
        &users,
        &concerts,
        &dates,
        &seat_nos,
        &amounts,
        &holds,
        &payments_ids,
        &balances,
        &events,
        &types[..] as &[&str],
        &keys,
        &payloads,
        &paid_at,
    )
    .execute(conn)
    .await
    .context("recording payments")?;
    Ok(())
}
