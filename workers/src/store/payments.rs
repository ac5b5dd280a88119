//! Money and sales: the balance debit, the sold seat, and the rows a payment leaves behind (reservation,
//! payment, ledger entry, outbox event).

use anyhow::Context;
use concert_core::commands::PaymentEvent;
use sqlx::PgConnection;
use uuid::Uuid;

/// Debits `amount` if the balance covers it, in one conditional statement. Returns the new balance, or
/// `None` (and nothing changed) when it does not.
pub(crate) async fn debit(
    conn: &mut PgConnection,
    user_id: Uuid,
    amount: i64,
) -> anyhow::Result<Option<i64>> {
    sqlx::query_scalar(
        "UPDATE users SET balance = balance - $2
         WHERE user_id = $1 AND balance >= $2
         RETURNING balance",
    )
    .bind(user_id)
    .bind(amount)
    .fetch_optional(conn)
    .await
    .context("debiting the balance")
}

/// Marks the seat sold, only while it still carries this hold. Returns whether it did.
pub(crate) async fn sell_seat(
    conn: &mut PgConnection,
    date_id: Uuid,
    seat_no: i32,
    hold_id: Uuid,
    reservation_id: Uuid,
) -> anyhow::Result<bool> {
    let sold = sqlx::query(
        "UPDATE seats SET reservation_id = $4, hold_id = NULL, held_by = NULL, hold_expires_at = NULL
         WHERE date_id = $1 AND seat_no = $2 AND hold_id = $3 AND reservation_id IS NULL",
    )
    .bind(date_id)
    .bind(seat_no)
    .bind(hold_id)
    .bind(reservation_id)
    .execute(conn)
    .await
    .context("marking the seat sold")?;
    Ok(sold.rows_affected() == 1)
}

/// Writes the reservation, the payment, the ledger entry and the outbox event of a payment, in one
/// statement. A free seat (price 0) changes no balance, so it gets no ledger entry.
pub(crate) async fn record_payment(
    conn: &mut PgConnection,
    event: &PaymentEvent,
    balance_after: i64,
) -> anyhow::Result<()> {
    let payload = serde_json::to_value(event).context("encoding the payment event")?;
    sqlx::query(
        "WITH reservation AS (
             INSERT INTO reservations (reservation_id, user_id, concert_id, date_id, seat_no, price, hold_id, paid_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, now())
             RETURNING reservation_id),
         payment AS (
             INSERT INTO payments (payment_id, reservation_id, hold_id, user_id, amount, paid_at)
             SELECT $8, reservation_id, $7, $2, $6, now() FROM reservation
             RETURNING payment_id),
         ledger AS (
             INSERT INTO balance_ledger (user_id, kind, amount, balance_after, payment_id, at)
             SELECT $2, 'PAYMENT', $6, $9, payment_id, now() FROM payment WHERE $6 > 0)
         INSERT INTO outbox (event_id, event_type, event_key, payload)
         SELECT $10, $11, $12, $13 FROM payment",
    )
    .bind(event.reservation_id)
    .bind(event.user_id)
    .bind(event.concert_id)
    .bind(event.date_id)
    .bind(event.seat_no)
    .bind(event.amount)
    .bind(event.hold_id)
    .bind(event.payment_id)
    .bind(balance_after)
    .bind(event.event_id)
    .bind(&event.event_type)
    .bind(event.reservation_id.to_string())
    .bind(payload)
    .execute(conn)
    .await
    .context("recording the payment")?;
    Ok(())
}
