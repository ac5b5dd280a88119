//! PAY: a checkout. Every hold it names (all on one date) is paid, or none is: one debit of the sum, one
//! payment, one reservation per seat, one payment event, the payer's place completed, all in the batch's
//! transaction. The payer's other live holds on the concert are released: those on the checkout's date here,
//! in the same transaction; those on other dates by RELEASE commands keyed by their dates, written to the
//! outbox in the same transaction and put on the log by the relay.
//!
//! Why the outbox for the other dates: those holds belong to other partitions, whose workers must apply any
//! change to them in their own log order (a hold there may be being paid or released right now). Publishing
//! the releases straight from this worker after the commit would lose them if it died in between, leaving the
//! seats blocked until the holds lapse; the api after the outcome has the same gap, and a sweeper would
//! change those holds outside their dates' order. The outbox row commits with the checkout, the relay
//! publishes it at least once, and the command's request id (fixed in the row) turns a repeat into a replay.
//!
//! A run of checkouts is decided together: the places are locked, the payers' held seats found, then their
//! holds and balances locked (the order the sweeper and releases use: places, holds, users, seats); each
//! checkout is decided in memory in log order, and the winners are written set-based. Every refusal is
//! decided before the first write, so a refused checkout changes nothing. A write that finds fewer rows than
//! decided means the data broke an invariant: that is an error, which sends the batch to
//! one-command-per-transaction mode where the offending checkout alone is rolled back.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use concert_core::commands::{Command, CommandEnvelope, PaidSeat, PaymentEvent, PaymentResult};
use concert_core::seats::{check_payable, check_releasable, HoldState};
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{hold_refusal, Decision, Refusal};
use super::hold::{check_date_open, check_place};
use crate::store::outbox;
use crate::store::payments::{self, Checkout};
use crate::store::queue::{self, PlaceLock, PlaceState};
use crate::store::seats::{self, DateFacts, HeldSeat, LockedHold};

/// What a PAY asks for: a checkout of `hold_ids`, all on `date_id`.
#[derive(Debug, Clone)]
pub(crate) struct PayRequest {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub hold_ids: Vec<Uuid>,
    pub queue_seq: i64,
}

impl PayRequest {
    pub(crate) fn from_envelope(envelope: &CommandEnvelope) -> Option<Self> {
        match &envelope.command {
            Command::Pay {
                concert_id,
                date_id,
                hold_ids,
                queue_seq,
            } => Some(Self {
                user_id: envelope.user_id,
                concert_id: *concert_id,
                date_id: *date_id,
                hold_ids: hold_ids.clone(),
                queue_seq: *queue_seq,
            }),
            _ => None,
        }
    }
}

/// What the database says about the holds, dates, places and payers of a run, read and locked up front.
#[derive(Debug, Default)]
pub(crate) struct PayFacts {
    /// The checkouts' holds and the payers' other holds on the checkouts' dates, locked.
    pub holds: HashMap<Uuid, LockedHold>,
    pub dates: HashMap<Uuid, DateFacts>,
    /// Balance of each payer, as it stands after the checkouts decided so far in the run.
    pub balances: HashMap<Uuid, i64>,
    /// The places the checkouts were sent with (concert, seq), locked.
    pub places: HashMap<(Uuid, i64), PlaceState>,
    /// The payers' holds in state HELD on the run's concerts, any date (not locked).
    pub held: Vec<HeldSeat>,
}

/// What a run of checkouts writes.
#[derive(Debug, Default)]
pub(crate) struct PayWrites {
    pub checkouts: Vec<Checkout>,
    /// Holds on a checkout's date that it released: (date, seat, hold).
    pub released: Vec<(Uuid, i32, Uuid)>,
    /// RELEASE commands for the payers' live holds on other dates.
    pub releases_elsewhere: Vec<CommandEnvelope>,
}

/// Decides and applies a run of checkouts, in log order; one decision per request.
pub(crate) async fn pay_run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    requests: &[PayRequest],
) -> anyhow::Result<Vec<Decision<PaymentResult>>> {
    let places: Vec<(Uuid, i64)> = requests
        .iter()
        .map(|r| (r.concert_id, r.queue_seq))
        .collect();
    let places = queue::lock_places(conn, &places, PlaceLock::Update).await?;
    let owners: Vec<(Uuid, Uuid)> = requests.iter().map(|r| (r.user_id, r.concert_id)).collect();
    let held = seats::held_by(conn, &owners).await?;
    let checkout_dates: HashSet<(Uuid, Uuid)> =
        requests.iter().map(|r| (r.user_id, r.date_id)).collect();
    let hold_ids: Vec<Uuid> = requests
        .iter()
        .flat_map(|r| r.hold_ids.iter().copied())
        .chain(
            held.iter()
                .filter(|h| checkout_dates.contains(&(h.user_id, h.date_id)))
                .map(|h| h.hold_id),
        )
        .collect();
    let payers: Vec<Uuid> = requests.iter().map(|r| r.user_id).collect();
    let dates: Vec<Uuid> = requests.iter().map(|r| r.date_id).collect();
    let mut facts = PayFacts {
        holds: seats::lock_holds(conn, &hold_ids).await?,
        balances: payments::lock_balances(conn, &payers).await?,
        dates: seats::dates(conn, &dates).await?,
        places,
        held,
    };
    let (decisions, writes) = decide_payments(requests, &mut facts, now);
    if writes.checkouts.is_empty() {
        return Ok(decisions);
    }
    let checkouts = &writes.checkouts;
    payments::debit(conn, checkouts).await?;
    payments::sell_seats(conn, checkouts).await?;
    payments::record(conn, checkouts).await?;
    let paid: Vec<Uuid> = checkouts
        .iter()
        .flat_map(|c| c.hold_ids.iter().copied())
        .collect();
    seats::end_holds(conn, &paid, HoldState::Paid).await?;
    let released: Vec<Uuid> = writes.released.iter().map(|&(_, _, hold)| hold).collect();
    seats::end_holds(conn, &released, HoldState::Released).await?;
    seats::clear_seat_holds(conn, &writes.released).await?;
    let places: Vec<(Uuid, i64, Uuid)> = checkouts
        .iter()
        .map(|c| (c.event.concert_id, c.queue_seq, c.event.user_id))
        .collect();
    queue::complete_places(conn, &places).await?;
    outbox::queue_commands(conn, &writes.releases_elsewhere).await?;
    Ok(decisions)
}

/// Decides each checkout in order against `facts`, updating them as checkouts succeed (the holds become
/// PAID or RELEASED, the balance goes down, the place is completed), so a later command in the run sees
/// the earlier ones' effects. Returns the decisions and what to write.
pub(crate) fn decide_payments(
    requests: &[PayRequest],
    facts: &mut PayFacts,
    now: DateTime<Utc>,
) -> (Vec<Decision<PaymentResult>>, PayWrites) {
    let mut writes = PayWrites::default();
    let decisions = requests
        .iter()
        .map(|r| {
            let checkout = decide_one(r, facts, now)?;
            release_the_rest(r, facts, now, &mut writes);
            let result = PaymentResult::new(
                checkout.event.payment_id,
                now,
                checkout.event.reservations.clone(),
            );
            writes.checkouts.push(checkout);
            Ok(result)
        })
        .collect();
    (decisions, writes)
}

/// The refusal of a checkout whose list of holds is empty or names one twice (the api refuses both).
fn check_hold_list(hold_ids: &[Uuid]) -> Result<(), Refusal> {
    if hold_ids.is_empty() {
        return Err(Refusal::new(
            ErrorCode::ValidationFailed,
            "a checkout names at least one hold",
        ));
    }
    let mut seen = HashSet::with_capacity(hold_ids.len());
    if let Some(twice) = hold_ids.iter().find(|id| !seen.insert(**id)) {
        return Err(Refusal::new(
            ErrorCode::ValidationFailed,
            format!("hold {twice} is named twice"),
        ));
    }
    Ok(())
}

/// Decides one checkout: the date first (a closed date refuses whatever its holds), then each hold in the
/// order named (the first one not payable refuses the checkout with its code), then the place, then the
/// balance against the sum.
fn decide_one(
    r: &PayRequest,
    facts: &mut PayFacts,
    now: DateTime<Utc>,
) -> Result<Checkout, Refusal> {
    check_hold_list(&r.hold_ids)?;
    if let Some(date) = facts.dates.get(&r.date_id) {
        check_date_open(date, now)?;
    }
    let mut seats = Vec::with_capacity(r.hold_ids.len());
    for &hold_id in &r.hold_ids {
        let Some(hold) = facts
            .holds
            .get(&hold_id)
            .filter(|h| h.date_id == r.date_id && h.concert_id == r.concert_id)
        else {
            return Err(hold_refusal(ErrorCode::HoldNotFound, hold_id));
        };
        check_payable(Some(hold.facts), r.user_id, now)
            .map_err(|code| hold_refusal(code, hold_id))?;
        seats.push(PaidSeat {
            reservation_id: Uuid::now_v7(),
            date_id: hold.date_id,
            seat_no: hold.seat_no,
            price: hold.price,
        });
    }
    let place = facts
        .places
        .get_mut(&(r.concert_id, r.queue_seq))
        .filter(|p| p.user_id == r.user_id);
    check_place(place.as_deref().copied())?;
    let amount: i64 = seats.iter().map(|s| s.price).sum();
    let balance = facts.balances.get_mut(&r.user_id).ok_or_else(|| {
        Refusal::new(
            ErrorCode::UserNotFound,
            format!("user {} was not found", r.user_id),
        )
    })?;
    if *balance < amount {
        return Err(Refusal::new(
            ErrorCode::InsufficientBalance,
            format!("the balance does not cover the price of {amount} won"),
        ));
    }
    // Decided: the effects, for the rest of the run to see.
    *balance -= amount;
    let balance_after = *balance;
    if let Some(place) = place {
        place.completed = true;
    }
    for hold_id in &r.hold_ids {
        if let Some(hold) = facts.holds.get_mut(hold_id) {
            hold.facts.state = HoldState::Paid;
        }
    }
    let first_hold = &facts.holds[&r.hold_ids[0]];
    let first = &seats[0];
    Ok(Checkout {
        event: PaymentEvent {
            event_id: Uuid::new_v4(),
            event_type: PaymentEvent::TYPE.to_owned(),
            occurred_at: now,
            payment_id: Uuid::now_v7(),
            reservation_id: first.reservation_id,
            hold_id: r.hold_ids[0],
            user_id: r.user_id,
            concert_id: first_hold.concert_id,
            date_id: first.date_id,
            seat_no: first.seat_no,
            amount,
            reservations: seats,
        },
        hold_ids: r.hold_ids.clone(),
        balance_after,
        queue_seq: r.queue_seq,
    })
}

/// After `r`'s checkout: the payer's other live holds on the concert are released, those on the checkout's
/// date now (they are locked in `facts.holds`), those on other dates by a RELEASE command on their date's
/// key (see the module doc).
fn release_the_rest(
    r: &PayRequest,
    facts: &mut PayFacts,
    now: DateTime<Utc>,
    writes: &mut PayWrites,
) {
    let others = facts.held.iter().filter(|h| {
        h.user_id == r.user_id
            && h.concert_id == r.concert_id
            && h.expires_at > now
            && !r.hold_ids.contains(&h.hold_id)
    });
    for other in others {
        if other.date_id != r.date_id {
            let release = Command::Release {
                concert_id: other.concert_id,
                date_id: other.date_id,
                hold_id: other.hold_id,
            };
            writes.releases_elsewhere.push(CommandEnvelope::new(
                Uuid::new_v4(),
                r.user_id,
                release,
            ));
            continue;
        }
        // An earlier command of the run may have ended it: decide on the locked row as it stands now.
        let Some(hold) = facts.holds.get_mut(&other.hold_id) else {
            continue;
        };
        if check_releasable(Some(hold.facts), r.user_id, now).is_ok() {
            hold.facts.state = HoldState::Released;
            writes
                .released
                .push((hold.date_id, hold.seat_no, other.hold_id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concert_core::seats::HoldFacts;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    struct Fixture {
        concert: Uuid,
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
            facts.held.push(HeldSeat {
                hold_id,
                user_id: user,
                concert_id: concert,
                date_id: date,
                expires_at: t(300),
            });
        }
        facts.balances.insert(user, balance);
        let starts_at = t(86_400);
        facts.dates.insert(
            date,
            DateFacts {
                concert_id: concert,
                starts_at,
                canceled_at: None,
            },
        );
        facts.places.insert(
            (concert, 1),
            PlaceState {
                user_id: user,
                completed: false,
                ended: false,
            },
        );
        Fixture {
            concert,
            date,
            user,
            facts,
        }
    }

    fn ask(f: &Fixture, hold_ids: &[Uuid]) -> PayRequest {
        PayRequest {
            user_id: f.user,
            concert_id: f.concert,
            date_id: f.date,
            hold_ids: hold_ids.to_vec(),
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
    fn a_checkout_pays_every_hold_for_the_sum_in_one_payment() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut f = fixture(1_000, &[(a, 100), (b, 200), (c, 300)]);
        let (decisions, writes) = decide_payments(&[ask(&f, &[b, a, c])], &mut f.facts, t(0));
        let paid = decisions[0].as_ref().unwrap();
        assert_eq!(paid.amount, 600);
        let seat_nos: Vec<i32> = paid.reservations.iter().map(|s| s.seat_no).collect();
        assert_eq!(seat_nos, [2, 1, 3], "in the order named");
        assert_eq!(paid.seat_no, None, "no v1 fields for several seats");
        assert_eq!(writes.checkouts.len(), 1);
        let checkout = &writes.checkouts[0];
        assert_eq!(checkout.balance_after, 400);
        assert_eq!((checkout.event.hold_id, checkout.event.seat_no), (b, 2));
        assert_eq!(checkout.event.payment_id, paid.payment_id);
        assert_eq!(f.facts.balances[&f.user], 400);
        assert!(f.facts.places[&(f.concert, 1)].completed);
        assert!([a, b, c]
            .iter()
            .all(|h| f.facts.holds[h].facts.state == HoldState::Paid));
    }

    #[test]
    fn one_hold_not_payable_refuses_the_whole_checkout_with_its_code() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut f = fixture(1_000, &[(a, 100), (b, 100)]);
        f.facts.holds.get_mut(&b).unwrap().facts.state = HoldState::Paid;
        let unknown = Uuid::new_v4();
        let asks = [
            ask(&f, &[a, b]),
            ask(&f, &[a, unknown]),
            ask(&f, &[a, a]),
            ask(&f, &[]),
        ];
        let (decisions, writes) = decide_payments(&asks, &mut f.facts, t(0));
        assert_eq!(
            codes(&decisions),
            [
                Some(ErrorCode::AlreadyPaid),
                Some(ErrorCode::HoldNotFound),
                Some(ErrorCode::ValidationFailed),
                Some(ErrorCode::ValidationFailed),
            ]
        );
        let detail = &decisions[1].as_ref().unwrap_err().detail;
        assert!(detail.contains(&unknown.to_string()), "{detail}");
        assert!(writes.checkouts.is_empty());
        assert_eq!(f.facts.holds[&a].facts.state, HoldState::Held);
        assert_eq!(f.facts.balances[&f.user], 1_000);
    }

    #[test]
    fn checkouts_draw_on_the_balance_in_log_order_and_a_place_checks_out_once() {
        let (a, b, c, d) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let mut f = fixture(250, &[(a, 100), (b, 100), (c, 100)]);
        // A hold the run's look for the payer's holds did not find (as if taken after it).
        let mut unseen = f.facts.holds[&a];
        unseen.seat_no = 4;
        f.facts.holds.insert(d, unseen);
        let asks = [
            ask(&f, &[a, b, c]),
            ask(&f, &[a, b]),
            ask(&f, &[c]),
            ask(&f, &[d]),
        ];
        let (decisions, writes) = decide_payments(&asks, &mut f.facts, t(0));
        assert_eq!(
            codes(&decisions),
            [
                Some(ErrorCode::InsufficientBalance),
                None,
                Some(ErrorCode::HoldNotFound),
                Some(ErrorCode::QueueTokenExpired),
            ],
            "the sum does not fit, two do; c was released by the checkout; the place is completed"
        );
        assert_eq!(writes.checkouts.len(), 1);
        assert_eq!(f.facts.balances[&f.user], 50);
        assert_eq!(
            writes.released,
            [(f.date, 3, c)],
            "the payer's other hold on the date is released"
        );
        assert_eq!(f.facts.holds[&c].facts.state, HoldState::Released);
    }

    #[test]
    fn holds_on_other_dates_are_released_through_their_own_dates() {
        let a = Uuid::new_v4();
        let mut f = fixture(1_000, &[(a, 100)]);
        let (elsewhere, lapsed, someone_elses) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let other_date = Uuid::new_v4();
        let held = |hold_id, user_id, expires_at| HeldSeat {
            hold_id,
            user_id,
            concert_id: f.concert,
            date_id: other_date,
            expires_at,
        };
        f.facts.held.extend([
            held(elsewhere, f.user, t(300)),
            held(lapsed, f.user, t(0)),
            held(someone_elses, Uuid::new_v4(), t(300)),
        ]);
        let (decisions, writes) = decide_payments(&[ask(&f, &[a])], &mut f.facts, t(0));
        assert_eq!(codes(&decisions), [None]);
        assert!(writes.released.is_empty());
        let [release] = writes.releases_elsewhere.as_slice() else {
            panic!("one release: {:?}", writes.releases_elsewhere)
        };
        assert_eq!(release.user_id, f.user);
        assert_eq!(
            release.command,
            Command::Release {
                concert_id: f.concert,
                date_id: other_date,
                hold_id: elsewhere,
            }
        );
        assert_eq!(release.command.partition_key(), other_date);
    }

    #[test]
    fn closed_dates_expired_holds_and_ended_places_are_refused() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut f = fixture(1_000, &[(a, 100), (b, 100)]);
        let (decisions, _) = decide_payments(&[ask(&f, &[a])], &mut f.facts, t(300));
        assert_eq!(codes(&decisions), [Some(ErrorCode::HoldExpired)]);
        f.facts.holds.get_mut(&b).unwrap().facts.expires_at = t(100_000);
        let (decisions, writes) = decide_payments(&[ask(&f, &[b])], &mut f.facts, t(86_400));
        assert_eq!(codes(&decisions), [Some(ErrorCode::DateClosed)]);
        assert!(writes.checkouts.is_empty());
        f.facts.places.get_mut(&(f.concert, 1)).unwrap().ended = true;
        let (decisions, _) = decide_payments(&[ask(&f, &[b])], &mut f.facts, t(0));
        assert_eq!(codes(&decisions), [Some(ErrorCode::QueueTokenExpired)]);
    }
}
