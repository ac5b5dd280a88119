//! CANCEL: a user cancels a reservation before its cutoff; the price goes back on their balance, the seat is
//! free again, and a `payment.refunded` event is queued, all in the batch's transaction.
//!
//! A run of cancels is decided together: the reservations are locked in one statement, each cancel is
//! decided in memory in log order (a second cancel of a reservation finds it CANCELED), and the refunds are
//! written set-based. The database refunds a reservation at most once whatever reaches it
//! (`refund_per_reservation`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use concert_core::cancellation::{
    cancel_deadline, check_cancellable, ReservationFacts, DEFAULT_CANCEL_CUTOFF_HOURS,
};
use concert_core::commands::{CancelResult, Command, CommandEnvelope, RefundEvent};
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{Decision, Refusal};
use crate::store::refunds::{self, LockedReservation, Refund, RefundCause};
use crate::store::seats;

/// What a CANCEL asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CancelRequest {
    pub user_id: Uuid,
    pub date_id: Uuid,
    pub reservation_id: Uuid,
}

impl CancelRequest {
    pub(crate) fn from_envelope(envelope: &CommandEnvelope) -> Option<Self> {
        match envelope.command {
            Command::Cancel {
                date_id,
                reservation_id,
                ..
            } => Some(Self {
                user_id: envelope.user_id,
                date_id,
                reservation_id,
            }),
            _ => None,
        }
    }
}

/// What the database says about the reservations of a run, read and locked up front.
#[derive(Debug, Default)]
pub(crate) struct CancelFacts {
    pub reservations: HashMap<Uuid, LockedReservation>,
    /// The cancel deadline of each reservation's date.
    pub deadlines: HashMap<Uuid, DateTime<Utc>>,
}

/// Decides and applies a run of cancels, in log order; one decision per request.
pub(crate) async fn cancel_run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    requests: &[CancelRequest],
) -> anyhow::Result<Vec<Decision<CancelResult>>> {
    let ids: Vec<Uuid> = requests.iter().map(|r| r.reservation_id).collect();
    let reservations = refunds::lock_reservations(conn, &ids).await?;
    let dates: Vec<Uuid> = reservations.values().map(|r| r.date_id).collect();
    let concerts: Vec<Uuid> = reservations.values().map(|r| r.concert_id).collect();
    let dates = seats::dates(conn, &dates).await?;
    let cutoffs = refunds::cancel_cutoffs(conn, &concerts).await?;
    let deadlines = dates
        .iter()
        .map(|(date_id, date)| {
            let hours = cutoffs
                .get(&date.concert_id)
                .copied()
                .unwrap_or(DEFAULT_CANCEL_CUTOFF_HOURS);
            (*date_id, cancel_deadline(date.starts_at, hours))
        })
        .collect();
    let mut facts = CancelFacts {
        reservations,
        deadlines,
    };
    let (decisions, refunds) = decide_cancels(requests, &mut facts, now);
    refunds::write(conn, &refunds).await?;
    Ok(decisions)
}

/// Decides each cancel in order against `facts`, updating them as cancels succeed (the reservation becomes
/// CANCELED). Returns the decisions and the refunds to write.
pub(crate) fn decide_cancels(
    requests: &[CancelRequest],
    facts: &mut CancelFacts,
    now: DateTime<Utc>,
) -> (Vec<Decision<CancelResult>>, Vec<Refund>) {
    let mut refunds = Vec::new();
    let decisions = requests
        .iter()
        .map(|r| {
            let refund = decide_one(r, facts, now)?;
            let result = CancelResult {
                reservation_id: refund.event.reservation_id,
                refund_id: refund.event.refund_id,
                amount: refund.event.amount,
                canceled_at: now,
            };
            refunds.push(refund);
            Ok(result)
        })
        .collect();
    (decisions, refunds)
}

fn decide_one(
    r: &CancelRequest,
    facts: &mut CancelFacts,
    now: DateTime<Utc>,
) -> Result<Refund, Refusal> {
    // A reservation of another date than the command names is not this command's to touch.
    let Some(reservation) = facts
        .reservations
        .get_mut(&r.reservation_id)
        .filter(|x| x.date_id == r.date_id)
    else {
        return Err(reservation_refusal(
            ErrorCode::ReservationNotFound,
            r.reservation_id,
        ));
    };
    let judged = ReservationFacts {
        owner: reservation.user_id,
        canceled: reservation.canceled,
        // A date that does not exist has no deadline left: never in practice (the reservation names it).
        deadline: facts
            .deadlines
            .get(&reservation.date_id)
            .copied()
            .unwrap_or(now),
    };
    check_cancellable(Some(judged), r.user_id, now)
        .map_err(|code| reservation_refusal(code, r.reservation_id))?;
    reservation.canceled = true;
    Ok(refund(reservation, RefundCause::Cancel, now))
}

/// The refund of `reservation` at `now`: its price, back to its owner.
pub(crate) fn refund(
    reservation: &LockedReservation,
    cause: RefundCause,
    now: DateTime<Utc>,
) -> Refund {
    Refund {
        event: RefundEvent {
            event_id: Uuid::new_v4(),
            event_type: RefundEvent::TYPE.to_owned(),
            occurred_at: now,
            payment_id: reservation.payment_id,
            refund_id: Uuid::now_v7(),
            reservation_id: reservation.reservation_id,
            user_id: reservation.user_id,
            concert_id: reservation.concert_id,
            date_id: reservation.date_id,
            seat_no: reservation.seat_no,
            amount: reservation.price,
        },
        cause,
    }
}

/// The refusal for a reservation that failed `check_cancellable`.
fn reservation_refusal(code: ErrorCode, reservation_id: Uuid) -> Refusal {
    let detail = match code {
        ErrorCode::AlreadyCanceled => format!("reservation {reservation_id} is already cancelled"),
        ErrorCode::CancelClosed => format!(
            "reservation {reservation_id} can no longer be cancelled: its date is past the cancellation cutoff"
        ),
        _ => format!("you have no reservation {reservation_id}"),
    };
    Refusal::new(code, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    struct Fixture {
        user: Uuid,
        date: Uuid,
        facts: CancelFacts,
    }

    fn fixture(reservations: &[(Uuid, i64)]) -> Fixture {
        let (user, date, concert) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut facts = CancelFacts::default();
        for (seat_no, &(reservation_id, price)) in (1..).zip(reservations) {
            let reservation = LockedReservation {
                reservation_id,
                payment_id: Uuid::new_v4(),
                user_id: user,
                concert_id: concert,
                date_id: date,
                seat_no,
                price,
                canceled: false,
            };
            facts.reservations.insert(reservation_id, reservation);
        }
        facts.deadlines.insert(date, t(1_000));
        Fixture { user, date, facts }
    }

    fn ask(f: &Fixture, user_id: Uuid, reservation_id: Uuid) -> CancelRequest {
        CancelRequest {
            user_id,
            date_id: f.date,
            reservation_id,
        }
    }

    fn codes(decisions: &[Decision<CancelResult>]) -> Vec<Option<ErrorCode>> {
        decisions
            .iter()
            .map(|d| d.as_ref().err().map(|r| r.code))
            .collect()
    }

    #[test]
    fn a_reservation_is_refunded_once_to_its_owner_in_log_order() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut f = fixture(&[(a, 100), (b, 50)]);
        let stranger = Uuid::new_v4();
        let asks = [
            ask(&f, stranger, a),
            ask(&f, f.user, a),
            ask(&f, f.user, a),
            ask(&f, f.user, b),
        ];
        let (decisions, refunds) = decide_cancels(&asks, &mut f.facts, t(0));
        assert_eq!(
            codes(&decisions),
            [
                Some(ErrorCode::ReservationNotFound),
                None,
                Some(ErrorCode::AlreadyCanceled),
                None
            ]
        );
        let refunded: Vec<(Uuid, i64)> = refunds
            .iter()
            .map(|r| (r.event.reservation_id, r.event.amount))
            .collect();
        assert_eq!(refunded, [(a, 100), (b, 50)], "in log order");
        assert_eq!(decisions[1].as_ref().unwrap().amount, 100);
        assert_eq!(
            decisions[1].as_ref().unwrap().refund_id,
            refunds[0].event.refund_id
        );
        assert!(refunds.iter().all(|r| r.cause == RefundCause::Cancel));
    }

    #[test]
    fn past_the_deadline_unknown_and_other_dates_are_refused() {
        let a = Uuid::new_v4();
        let mut f = fixture(&[(a, 100)]);
        let (decisions, refunds) = decide_cancels(&[ask(&f, f.user, a)], &mut f.facts, t(1_000));
        assert_eq!(codes(&decisions), [Some(ErrorCode::CancelClosed)]);
        assert!(refunds.is_empty());
        let unknown = ask(&f, f.user, Uuid::new_v4());
        let other_date = CancelRequest {
            date_id: Uuid::new_v4(),
            ..ask(&f, f.user, a)
        };
        let (decisions, _) = decide_cancels(&[unknown, other_date], &mut f.facts, t(0));
        assert_eq!(
            codes(&decisions),
            [
                Some(ErrorCode::ReservationNotFound),
                Some(ErrorCode::ReservationNotFound)
            ]
        );
        assert!(!f.facts.reservations[&a].canceled, "nothing cancelled");
    }
}
