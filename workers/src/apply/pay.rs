//! PAY: the balance is debited, the seat sold, the session completed and a payment event queued, all in
//! the batch's transaction.
//!
//! A run of payments is decided together: the holds, then the payers' balances are locked (the order the
//! sweeper and releases use), each payment is decided in memory in log order, and the winners are written
//! set-based. Every refusal is decided before the first write, so a refused payment changes nothing. A
//! write that finds fewer rows than decided means the data broke an invariant: that is an error, which
//! sends the batch to one-command-per-transaction mode where the offending payment alone is rolled back.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use concert_core::commands::{Command, CommandEnvelope, PaymentEvent, PaymentResult};
use concert_core::seats::{check_payable, HoldState};
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{hold_refusal, Decision, Refusal};
use super::hold::check_date_open;
use crate::store::payments::{self, Sale};
use crate::store::queue;
use crate::store::seats::{self, DateFacts, LockedHold};

/// What a PAY asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PayRequest {
    pub user_id: Uuid,
    pub date_id: Uuid,
    pub hold_id: Uuid,
    pub queue_seq: i64,
}

impl PayRequest {
    pub(crate) fn from_envelope(envelope: &CommandEnvelope) -> Option<Self> {
        match envelope.command {
            Command::Pay {
                date_id,
                hold_id,
                queue_seq,
                ..
            } => Some(Self {
                user_id: envelope.user_id,
                date_id,
                hold_id,
                queue_seq,
            }),
            _ => None,
        }
    }
}

/// What the database says about the holds, dates and payers of a run, read and locked up front.
#[derive(Debug, Default)]
pub(crate) struct PayFacts {
    pub holds: HashMap<Uuid, LockedHold>,
    pub dates: HashMap<Uuid, DateFacts>,
    /// Balance of each payer, as it stands after the payments decided so far in the run.
    pub balances: HashMap<Uuid, i64>,
}

/// Decides and applies a run of payments, in log order; one decision per request.
pub(crate) async fn pay_run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    requests: &[PayRequest],
) -> anyhow::Result<Vec<Decision<PaymentResult>>> {
    let hold_ids: Vec<Uuid> = requests.iter().map(|r| r.hold_id).collect();
    let payers: Vec<Uuid> = requests.iter().map(|r| r.user_id).collect();
    let dates: Vec<Uuid> = requests.iter().map(|r| r.date_id).collect();
    let mut facts = PayFacts {
        holds: seats::lock_holds(conn, &hold_ids).await?,
        balances: payments::lock_balances(conn, &payers).await?,
        dates: seats::dates(conn, &dates).await?,
    };
    let (decisions, sales) = decide_payments(requests, &mut facts, now);
    if sales.is_empty() {
        return Ok(decisions);
    }
    payments::debit(conn, &sales).await?;
    payments::sell_seats(conn, &sales).await?;
    payments::record(conn, &sales).await?;
    let paid: Vec<Uuid> = sales.iter().map(|s| s.event.hold_id).collect();
    seats::end_holds(conn, &paid, HoldState::Paid).await?;
    let places: Vec<(Uuid, i64, Uuid)> = sales
        .iter()
        .map(|s| (s.event.concert_id, s.queue_seq, s.event.user_id))
        .collect();
    queue::complete_places(conn, &places).await?;
    Ok(decisions)
}

/// Decides each payment in order against `facts`, updating them as payments succeed (the hold becomes
/// PAID, the balance goes down), so a later payment in the run sees the earlier ones' effects. Returns the
/// decisions and the sales to write.
pub(crate) fn decide_payments(
    requests: &[PayRequest],
    facts: &mut PayFacts,
    now: DateTime<Utc>,
) -> (Vec<Decision<PaymentResult>>, Vec<Sale>) {
    let mut sales = Vec::new();
    let decisions = requests
        .iter()
        .map(|r| {
            let sale = decide_one(r, facts, now)?;
            let e = &sale.event;
            let result = PaymentResult {
                payment_id: e.payment_id,
                reservation_id: e.reservation_id,
                amount: e.amount,
                date_id: e.date_id,
                seat_no: e.seat_no,
                paid_at: now,
            };
            sales.push(sale);
            Ok(result)
        })
        .collect();
    (decisions, sales)
}

fn decide_one(r: &PayRequest, facts: &mut PayFacts, now: DateTime<Utc>) -> Result<Sale, Refusal> {
    let Some(hold) = facts
        .holds
        .get_mut(&r.hold_id)
        .filter(|h| h.date_id == r.date_id)
    else {
        return Err(hold_refusal(ErrorCode::HoldNotFound, r.hold_id));
    };
    check_payable(Some(hold.facts), r.user_id, now)
        .map_err(|code| hold_refusal(code, r.hold_id))?;
    if let Some(date) = facts.dates.get(&hold.date_id) {
        check_date_open(date, now)?;
    }
    let balance = facts.balances.get_mut(&r.user_id).ok_or_else(|| {
        Refusal::new(
            ErrorCode::UserNotFound,
            format!("user {} was not found", r.user_id),
        )
    })?;
    if *balance < hold.price {
        return Err(Refusal::new(
            ErrorCode::InsufficientBalance,
            format!("the balance does not cover the price of {} won", hold.price),
        ));
    }
    *balance -= hold.price;
    hold.facts.state = HoldState::Paid;
    Ok(Sale {
        event: PaymentEvent {
            event_id: Uuid::new_v4(),
            event_type: PaymentEvent::TYPE.to_owned(),
            occurred_at: now,
            payment_id: Uuid::now_v7(),
            reservation_id: Uuid::now_v7(),
            hold_id: r.hold_id,
            user_id: r.user_id,
            concert_id: hold.concert_id,
            date_id: hold.date_id,
            seat_no: hold.seat_no,
            amount: hold.price,
        },
        balance_after: *balance,
        queue_seq: r.queue_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use concert_core::seats::HoldFacts;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    struct Fixture {
        date: Uuid,
        user: Uuid,
        facts: PayFacts,
    }

    fn fixture(balance: i64, prices: &[(Uuid, i64)]) -> Fixture {
        let (date, user, concert) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut facts = PayFacts::default();
        for (seat_no, &(hold_id, price)) in (1..).zip(prices) {
            let hold = LockedHold {
                facts: HoldFacts {
                    owner: user,
                    state: HoldState::Held,
                    expires_at: t(300),
                },
                concert_id: concert,
                date_id: date,
                seat_no,
                price,
            };
            facts.holds.insert(hold_id, hold);
        }
        facts.balances.insert(user, balance);
        let starts_at = t(86_400);
        facts.dates.insert(
            date,
            DateFacts {
                concert_id: concert,
                starts_at,
            },
        );
        Fixture { date, user, facts }
    }

    fn ask(f: &Fixture, hold_id: Uuid) -> PayRequest {
        PayRequest {
            user_id: f.user,
            date_id: f.date,
            hold_id,
            queue_seq: 1,
        }
    }

    fn codes(decisions: &[Decision<PaymentResult>]) -> Vec<Option<ErrorCode>> {
        decisions
            .iter()
            .map(|d| d.as_ref().err().map(|r| r.code))
            .collect()
    }

    #[test]
    fn payments_draw_on_the_balance_in_log_order_and_a_hold_is_paid_once() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut f = fixture(250, &[(a, 100), (b, 100), (c, 100)]);
        let asks = [ask(&f, a), ask(&f, a), ask(&f, b), ask(&f, c)];
        let (decisions, sales) = decide_payments(&asks, &mut f.facts, t(0));
        assert_eq!(
            codes(&decisions),
            [
                None,
                Some(ErrorCode::AlreadyPaid),
                None,
                Some(ErrorCode::InsufficientBalance)
            ]
        );
        let after: Vec<i64> = sales.iter().map(|s| s.balance_after).collect();
        assert_eq!(after, [150, 50]);
        assert_eq!(f.facts.balances[&f.user], 50);
    }

    #[test]
    fn expired_unknown_and_closed_are_refused() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut f = fixture(1_000, &[(a, 100), (b, 100)]);
        let (decisions, _) = decide_payments(&[ask(&f, a)], &mut f.facts, t(300));
        assert_eq!(codes(&decisions), [Some(ErrorCode::HoldExpired)]);
        let unknown = ask(&f, Uuid::new_v4());
        let (decisions, _) = decide_payments(&[unknown], &mut f.facts, t(0));
        assert_eq!(codes(&decisions), [Some(ErrorCode::HoldNotFound)]);
        f.facts.holds.get_mut(&b).unwrap().facts.expires_at = t(100_000);
        let (decisions, sales) = decide_payments(&[ask(&f, b)], &mut f.facts, t(86_400));
        assert_eq!(codes(&decisions), [Some(ErrorCode::DateClosed)]);
        assert!(sales.is_empty());
    }
}
