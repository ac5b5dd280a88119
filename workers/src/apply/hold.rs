//! HOLD: one seat for one user until a deadline.
//!
//! Consecutive holds of a batch are decided together: their seats are locked and read in one statement,
//! each hold is decided in memory in log order (exactly as if applied one by one), and the winners are
//! written in two statements. A flash crowd on one date is then a handful of round trips per batch rather
//! than three per command.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use concert_core::commands::{Command, CommandEnvelope, HoldResult};
use concert_core::seats::{seat_status, SeatStatus};
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{Decision, Refusal};
use crate::store::queue::{self, PlaceLock, PlaceState};
use crate::store::seats::{self, DateFacts, NewHold, SeatForHold};

/// What a HOLD asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HoldRequest {
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    /// The user's place in line, whose active window caps the hold.
    pub queue_seq: i64,
}

impl HoldRequest {
    pub(crate) fn from_envelope(envelope: &CommandEnvelope) -> Option<Self> {
        match envelope.command {
            Command::Hold {
                concert_id,
                date_id,
                seat_no,
                queue_seq,
            } => Some(Self {
                user_id: envelope.user_id,
                concert_id,
                date_id,
                seat_no,
                queue_seq,
            }),
            _ => None,
        }
    }
}

/// What the database says about the seats and users of a run, read (and the seats locked) up front.
#[derive(Debug, Default)]
pub(crate) struct RunFacts {
    /// `hold_seconds` per concert with a waiting room.
    pub hold_seconds: HashMap<Uuid, i32>,
    /// Live holds per (user, date).
    pub live_holds: HashMap<(Uuid, Uuid), i64>,
    /// Concert and start of each existing date.
    pub dates: HashMap<Uuid, DateFacts>,
    /// End of the active window of each admitted place (concert, seq) of the run.
    pub windows: HashMap<(Uuid, i64), DateTime<Utc>>,
    /// Each place (concert, seq) of the run, locked (shared) so a checkout completing it waits for the run.
    pub places: HashMap<(Uuid, i64), PlaceState>,
    /// Existing seats, by (date, seat).
    pub seats: HashMap<(Uuid, i32), SeatForHold>,
}

/// Decides and applies a run of holds, in log order; one decision per request.
pub(crate) async fn hold_run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    max_holds_per_user: i64,
    requests: &[HoldRequest],
) -> anyhow::Result<Vec<Decision<HoldResult>>> {
    let mut concerts: Vec<Uuid> = requests.iter().map(|r| r.concert_id).collect();
    concerts.sort_unstable();
    concerts.dedup();
    let pairs: Vec<(Uuid, Uuid)> = requests.iter().map(|r| (r.user_id, r.date_id)).collect();
    let dates: Vec<Uuid> = requests.iter().map(|r| r.date_id).collect();
    let wanted: Vec<(Uuid, i32)> = requests.iter().map(|r| (r.date_id, r.seat_no)).collect();
    let places: Vec<(Uuid, i64)> = requests
        .iter()
        .map(|r| (r.concert_id, r.queue_seq))
        .collect();
    // Places are locked before seats: the order every writer takes them in (see `queue::lock_places`).
    let mut facts = RunFacts {
        places: queue::lock_places(conn, &places, PlaceLock::Share).await?,
        hold_seconds: seats::hold_seconds(conn, &concerts).await?,
        live_holds: seats::live_hold_counts(conn, &pairs).await?,
        dates: seats::dates(conn, &dates).await?,
        windows: seats::active_windows(conn, &places).await?,
        seats: seats::lock_seats(conn, &wanted).await?,
    };
    let (decisions, new_holds) = decide_holds(requests, &mut facts, max_holds_per_user, now);
    seats::write_holds(conn, &new_holds).await?;
    Ok(decisions)
}

/// Decides each request in order against `facts`, updating them as holds are granted, so a later request
/// in the run sees the earlier ones' effects. Returns the decisions and the holds to write.
pub(crate) fn decide_holds(
    requests: &[HoldRequest],
    facts: &mut RunFacts,
    max_holds_per_user: i64,
    now: DateTime<Utc>,
) -> (Vec<Decision<HoldResult>>, Vec<NewHold>) {
    let mut new_holds = Vec::new();
    let decisions = requests
        .iter()
        .map(|r| {
            let hold = decide_one(r, facts, max_holds_per_user, now)?;
            new_holds.push(hold);
            Ok(HoldResult {
                hold_id: hold.hold_id,
                date_id: hold.date_id,
                seat_no: hold.seat_no,
                price: hold.price,
                expires_at: hold.expires_at,
            })
        })
        .collect();
    (decisions, new_holds)
}

fn decide_one(
    r: &HoldRequest,
    facts: &mut RunFacts,
    max_holds_per_user: i64,
    now: DateTime<Utc>,
) -> Result<NewHold, Refusal> {
    let hold_seconds = *facts.hold_seconds.get(&r.concert_id).ok_or_else(|| {
        Refusal::new(
            ErrorCode::ConcertNotFound,
            format!("concert {} was not found", r.concert_id),
        )
    })?;
    let date = facts
        .dates
        .get(&r.date_id)
        .filter(|d| d.concert_id == r.concert_id)
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::DateNotFound,
                format!("date {} is not a date of this concert", r.date_id),
            )
        })?;
    check_date_open(date, now)?;
    // The api admits only ACTIVE places; this is the database's word on the window, checked where the
    // time is used. A hold never outlives the session it was taken in.
    let window_end = facts.windows.get(&(r.concert_id, r.queue_seq)).copied();
    if window_end.is_some_and(|until| until <= now) {
        return Err(Refusal::new(
            ErrorCode::QueueTokenExpired,
            "the queue token's active window has ended",
        ));
    }
    let place = facts.places.get(&(r.concert_id, r.queue_seq));
    check_place(place.filter(|p| p.user_id == r.user_id).copied())?;
    let live = facts.live_holds.entry((r.user_id, r.date_id)).or_insert(0);
    if *live >= max_holds_per_user {
        return Err(Refusal::new(
            ErrorCode::HoldLimitReached,
            format!("at most {max_holds_per_user} seats may be held at once on one date"),
        ));
    }
    let seat = facts
        .seats
        .get_mut(&(r.date_id, r.seat_no))
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::SeatNotFound,
                format!("seat {} does not exist on this date", r.seat_no),
            )
        })?;
    if seat_status(seat.sold, seat.hold_expires_at, now) != SeatStatus::Available {
        return Err(Refusal::new(
            ErrorCode::SeatUnavailable,
            format!("seat {} is held or sold", r.seat_no),
        ));
    }
    let full_length = now + Duration::seconds(i64::from(hold_seconds));
    let expires_at = window_end.map_or(full_length, |until| until.min(full_length));
    seat.hold_expires_at = Some(expires_at);
    *live += 1;
    Ok(NewHold {
        hold_id: Uuid::now_v7(),
        user_id: r.user_id,
        concert_id: r.concert_id,
        date_id: r.date_id,
        seat_no: r.seat_no,
        price: seat.price,
        expires_at,
    })
}

/// A place that a checkout completed, or that ended unclaimed, takes no more holds or payments, whatever an
/// api instance believed when it accepted the command. A place the database does not have (never in
/// production: the api admitted it) is judged by the api's word alone.
pub(crate) fn check_place(place: Option<PlaceState>) -> Result<(), Refusal> {
    match place {
        Some(p) if p.completed => Err(Refusal::new(
            ErrorCode::QueueTokenExpired,
            "the queue token is completed: a checkout ended it",
        )),
        Some(p) if p.ended => Err(Refusal::new(
            ErrorCode::QueueTokenExpired,
            "the queue token has expired",
        )),
        _ => Ok(()),
    }
}

/// A date that was cancelled or has started takes no more holds or payments.
pub(crate) fn check_date_open(date: &DateFacts, now: DateTime<Utc>) -> Result<(), Refusal> {
    if let Some(canceled_at) = date.canceled_at {
        return Err(Refusal::new(
            ErrorCode::DateClosed,
            format!("the date was cancelled at {}", canceled_at.to_rfc3339()),
        ));
    }
    if now >= date.starts_at {
        return Err(Refusal::new(
            ErrorCode::DateClosed,
            format!("the date started at {}", date.starts_at.to_rfc3339()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    struct Fixture {
        concert: Uuid,
        date: Uuid,
        facts: RunFacts,
    }

    fn fixture(seats: &[(i32, bool, Option<i64>)]) -> Fixture {
        let (concert, date) = (Uuid::new_v4(), Uuid::new_v4());
        let mut facts = RunFacts::default();
        facts.hold_seconds.insert(concert, 300);
        facts.dates.insert(
            date,
            DateFacts {
                concert_id: concert,
                starts_at: t(86_400),
                canceled_at: None,
            },
        );
        for &(seat_no, sold, held_until) in seats {
            let seat = SeatForHold {
                date_id: date,
                seat_no,
                price: 1_000,
                sold,
                hold_expires_at: held_until.map(t),
            };
            facts.seats.insert((date, seat_no), seat);
        }
        Fixture {
            concert,
            date,
            facts,
        }
    }

    fn ask(f: &Fixture, user: Uuid, seat_no: i32) -> HoldRequest {
        HoldRequest {
            user_id: user,
            concert_id: f.concert,
            date_id: f.date,
            seat_no,
            queue_seq: 1,
        }
    }

    fn codes(decisions: &[Decision<HoldResult>]) -> Vec<Option<ErrorCode>> {
        decisions
            .iter()
            .map(|d| d.as_ref().err().map(|r| r.code))
            .collect()
    }

    #[test]
    fn first_in_log_order_wins_the_seat() {
        let mut f = fixture(&[(1, false, None)]);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let asks = [ask(&f, a, 1), ask(&f, b, 1)];
        let (decisions, holds) = decide_holds(&asks, &mut f.facts, 4, t(0));
        assert_eq!(
            codes(&decisions),
            vec![None, Some(ErrorCode::SeatUnavailable)]
        );
        assert_eq!(holds.len(), 1);
        assert_eq!(holds[0].user_id, a);
        assert_eq!(holds[0].expires_at, t(300));
    }

    #[test]
    fn sold_and_live_held_seats_are_unavailable_lapsed_ones_are_free() {
        let mut f = fixture(&[(1, true, None), (2, false, Some(10)), (3, false, Some(0))]);
        let u = Uuid::new_v4();
        let asks = [ask(&f, u, 1), ask(&f, u, 2), ask(&f, u, 3)];
        let (decisions, _) = decide_holds(&asks, &mut f.facts, 4, t(0));
        assert_eq!(
            codes(&decisions),
            vec![
                Some(ErrorCode::SeatUnavailable),
                Some(ErrorCode::SeatUnavailable),
                None
            ]
        );
    }

    #[test]
    fn the_limit_counts_holds_granted_earlier_in_the_run() {
        let mut f = fixture(&[(1, false, None), (2, false, None), (3, false, None)]);
        let u = Uuid::new_v4();
        f.facts.live_holds.insert((u, f.date), 1);
        let asks = [ask(&f, u, 1), ask(&f, u, 2), ask(&f, u, 3)];
        let (decisions, holds) = decide_holds(&asks, &mut f.facts, 2, t(0));
        assert_eq!(
            codes(&decisions),
            vec![
                None,
                Some(ErrorCode::HoldLimitReached),
                Some(ErrorCode::HoldLimitReached)
            ]
        );
        assert_eq!(holds.len(), 1);
    }

    #[test]
    fn unknown_concert_date_and_seat_have_their_codes() {
        let mut f = fixture(&[(1, false, None)]);
        let u = Uuid::new_v4();
        let other_concert = HoldRequest {
            concert_id: Uuid::new_v4(),
            ..ask(&f, u, 1)
        };
        let other_date = HoldRequest {
            date_id: Uuid::new_v4(),
            ..ask(&f, u, 1)
        };
        let asks = [other_concert, other_date, ask(&f, u, 51)];
        let (decisions, holds) = decide_holds(&asks, &mut f.facts, 4, t(0));
        assert_eq!(
            codes(&decisions),
            vec![
                Some(ErrorCode::ConcertNotFound),
                Some(ErrorCode::DateNotFound),
                Some(ErrorCode::SeatNotFound)
            ]
        );
        assert!(holds.is_empty());
    }

    #[test]
    fn a_started_date_is_closed() {
        let mut f = fixture(&[(1, false, None)]);
        let u = Uuid::new_v4();
        let asks = [ask(&f, u, 1)];
        let (decisions, holds) = decide_holds(&asks, &mut f.facts, 4, t(86_400));
        assert_eq!(codes(&decisions), vec![Some(ErrorCode::DateClosed)]);
        assert!(holds.is_empty());
    }

    #[test]
    fn a_cancelled_date_is_closed() {
        let mut f = fixture(&[(1, false, None)]);
        f.facts.dates.get_mut(&f.date).unwrap().canceled_at = Some(t(-10));
        let asks = [ask(&f, Uuid::new_v4(), 1)];
        let (decisions, holds) = decide_holds(&asks, &mut f.facts, 4, t(0));
        assert_eq!(codes(&decisions), vec![Some(ErrorCode::DateClosed)]);
        assert!(holds.is_empty());
    }

    #[test]
    fn a_hold_ends_no_later_than_its_active_window_and_none_after_it() {
        let mut f = fixture(&[(1, false, None), (2, false, None)]);
        let u = Uuid::new_v4();
        f.facts.windows.insert((f.concert, 1), t(120));
        let asks = [ask(&f, u, 1)];
        let (decisions, holds) = decide_holds(&asks, &mut f.facts, 4, t(0));
        assert_eq!(codes(&decisions), vec![None]);
        assert_eq!(
            holds[0].expires_at,
            t(120),
            "capped at active_until, not t(300)"
        );

        let asks = [ask(&f, u, 2)];
        let (decisions, _) = decide_holds(&asks, &mut f.facts, 4, t(120));
        assert_eq!(codes(&decisions), vec![Some(ErrorCode::QueueTokenExpired)]);
    }

    #[test]
    fn a_completed_or_ended_place_takes_no_hold_someone_elses_is_not_judged() {
        let mut f = fixture(&[(1, false, None), (2, false, None)]);
        let (u, other) = (Uuid::new_v4(), Uuid::new_v4());
        let place = |user_id, completed, ended| PlaceState {
            user_id,
            completed,
            ended,
        };
        for (state, expected) in [
            (place(u, true, false), Some(ErrorCode::QueueTokenExpired)),
            (place(u, false, true), Some(ErrorCode::QueueTokenExpired)),
            (place(other, true, false), None),
            (place(u, false, false), None),
        ] {
            f.facts.places.insert((f.concert, 1), state);
            let (decisions, holds) = decide_holds(&[ask(&f, u, 1)], &mut f.facts, 4, t(0));
            assert_eq!(codes(&decisions), vec![expected], "{state:?}");
            for hold in holds {
                f.facts
                    .seats
                    .get_mut(&(f.date, hold.seat_no))
                    .unwrap()
                    .hold_expires_at = None;
            }
        }
    }
}
