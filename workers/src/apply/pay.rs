//! PAY: the balance is debited, the seat sold, the session completed and a payment event queued, all in
//! the batch's transaction.
//!
//! Every refusal is decided before the first write (the debit is itself conditional), so a refused
//! payment changes nothing. A later write that finds nothing to change means the data broke an
//! invariant: that is an error, which sends the batch to one-command-per-transaction mode where this
//! payment alone is rolled back.

use anyhow::bail;
use chrono::{DateTime, Utc};
use concert_core::commands::{PaymentEvent, PaymentResult};
use concert_core::seats::{check_payable, HoldState};
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{hold_refusal, Decision, Refusal};
use crate::store::{payments, queue, seats};

/// What a PAY asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PayRequest {
    pub user_id: Uuid,
    pub date_id: Uuid,
    pub hold_id: Uuid,
    pub queue_seq: i64,
}

/// Pays for the hold. Locks in the order holds, users, seats, as the sweeper does.
pub(crate) async fn pay(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    request: PayRequest,
) -> anyhow::Result<Decision<PaymentResult>> {
    let PayRequest {
        user_id,
        date_id,
        hold_id,
        queue_seq,
    } = request;
    let hold = seats::lock_hold(conn, hold_id)
        .await?
        .filter(|h| h.date_id == date_id);
    if let Err(code) = check_payable(hold.map(|h| h.facts), user_id, now) {
        return Ok(Err(hold_refusal(code, hold_id)));
    }
    let Some(hold) = hold else {
        bail!("hold {hold_id} passed the payment check without a row")
    };

    let Some(balance_after) = payments::debit(conn, user_id, hold.price).await? else {
        return Ok(Err(Refusal::new(
            ErrorCode::InsufficientBalance,
            format!("the balance does not cover the price of {} won", hold.price),
        )));
    };

    let reservation_id = Uuid::now_v7();
    let payment_id = Uuid::now_v7();
    if !payments::sell_seat(conn, hold.date_id, hold.seat_no, hold_id, reservation_id).await? {
        bail!(
            "seat {} of date {} no longer carries hold {hold_id}",
            hold.seat_no,
            hold.date_id
        );
    }
    let event = PaymentEvent {
        event_id: Uuid::new_v4(),
        event_type: PaymentEvent::TYPE.to_owned(),
        occurred_at: now,
        payment_id,
        reservation_id,
        hold_id,
        user_id,
        concert_id: hold.concert_id,
        date_id: hold.date_id,
        seat_no: hold.seat_no,
        amount: hold.price,
    };
    payments::record_payment(conn, &event, balance_after).await?;
    if !seats::end_hold(conn, hold_id, HoldState::Paid).await? {
        bail!("hold {hold_id} was live when locked but could not be marked paid");
    }
    queue::complete_place(conn, hold.concert_id, queue_seq, user_id).await?;
    Ok(Ok(PaymentResult {
        payment_id,
        reservation_id,
        amount: hold.price,
        date_id: hold.date_id,
        seat_no: hold.seat_no,
        paid_at: now,
    }))
}
