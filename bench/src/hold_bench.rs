//! The measured fixed-duration phases: hold throughput (at an offered rate, and unthrottled) and queue-status polls.
//!
//! Hold phases run on a concert of their own whose seats are laid out so that every hold goes to a seat nobody
//! has tried yet: hold number `k` takes date `k % D`, seat `k / D + 1`, for user `(seat - 1) % N`. So each hold
//! is a real state change (AVAILABLE to HELD), spread over many dates and so over every booking partition, and
//! no user ever has more than `ceil(S / N)` <= 4 live holds on a date (the per-user limit). Seats are never
//! recycled: the concert is sized for the phase, and only past its capacity would holds wrap around and meet
//! `SEAT_UNAVAILABLE`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::client::{Api, Caller, Outcome};
use crate::figures::{closed_loop_figures, PhaseFigures};
use crate::rounds;
use crate::setup::Concert;
use crate::stats::{OpStats, Recorder};
use crate::status_poller::StatusPoller;
use crate::verify::{expected_codes, Kind, Ledger};

/// Most seats a date may have (`MAX_SEATS` in the service).
const MAX_SEATS: u64 = 10_000;
/// Most dates a concert may be created with.
const MAX_DATES: u64 = 366;
/// At least this many dates, so the holds spread over every booking partition.
const MIN_DATES: u64 = 32;
/// Live holds a user may have on one date (`MAX_HOLDS_PER_USER`).
const HOLDS_PER_USER_DATE: u64 = 4;

/// Dates and seats per date for a hold-phase concert of about `capacity` seats held by `users` users.
pub fn layout(capacity: u64, users: usize) -> (usize, i32) {
    let per_date_max = MAX_SEATS.min(HOLDS_PER_USER_DATE * users.max(1) as u64);
    let dates = capacity.div_ceil(per_date_max).clamp(MIN_DATES, MAX_DATES);
    let seats = capacity.div_ceil(dates).clamp(1, per_date_max);
    (dates as usize, seats as i32)
}

/// Where hold number `k` goes: (date index, seat number, user index).
pub fn target(k: u64, dates: usize, seats: i32, users: usize) -> (usize, i32, usize) {
    let capacity = dates as u64 * seats as u64;
    let k = k % capacity.max(1);
    let date = (k % dates as u64) as usize;
    let seat = (k / dates as u64) as i32 + 1;
    (date, seat, (seat as usize - 1) % users.max(1))
}

/// The users and concert the hold and poll phases use.
pub struct HoldBench {
    pub api: Api,
    pub rec: Arc<Recorder>,
    pub ledger: Arc<Ledger>,
    pub concert: Concert,
    /// (user index, access token, ACTIVE queue token for `concert`).
    pub users: Vec<(usize, String, String)>,
    pub wait: u64,
    next: AtomicU64,
}

impl HoldBench {
    /// Ready to run hold phases on `concert` with these admitted users.
    pub fn new(
        api: Api,
        rec: Arc<Recorder>,
        ledger: Arc<Ledger>,
        concert: Concert,
        users: Vec<(usize, String, String)>,
        wait: u64,
    ) -> Self {
        Self {
            api,
            rec,
            ledger,
            concert,
            users,
            wait,
            next: AtomicU64::new(0),
        }
    }

    /// Holds the next fresh seat: when it was submitted and what came of it.
    async fn hold_next(&self, op: &str) -> (Instant, Outcome) {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let (d, seat, u) = target(
            k,
            self.concert.dates.len(),
            self.concert.seats,
            self.users.len(),
        );
        let (idx, token, qt) = &self.users[u];
        let (out, t) = self
            .api
            .hold(
                Caller {
                    token,
                    queue: Some(qt),
                },
                &self.concert.dates[d],
                seat,
                self.wait,
            )
            .await;
        self.ledger
            .observe(op, *idx, Some(Kind::Hold), &out, expected_codes(Kind::Hold));
        (t, out)
    }

    /// Offers `rate` holds per second for `duration` (open loop: the schedule does not wait for answers), with at
    /// most `max_inflight` outstanding; what the cap turns away is counted as shed.
    pub async fn at_rate(
        self: &Arc<Self>,
        rate: u64,
        duration: Duration,
        max_inflight: usize,
        bar: &indicatif::ProgressBar,
    ) -> PhaseFigures {
        let op = format!("tp@{rate}/hold");
        let inflight = Arc::new(Semaphore::new(max_inflight));
        let (mut sent, mut shed) = (0u64, 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let start = Instant::now();
        loop {
            tick.tick().await;
            let elapsed = start.elapsed().min(duration);
            let due = (elapsed.as_secs_f64() * rate as f64) as u64;
            while sent + shed < due {
                match inflight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        sent += 1;
                        let (me, op) = (self.clone(), op.clone());
                        tokio::spawn(async move {
                            let (t, out) = me.hold_next(&op).await;
                            me.rec.record(&op, t, out.code());
                            drop(permit);
                        });
                    }
                    Err(_) => shed += 1,
                }
            }
            bar.set_position(elapsed.as_millis() as u64);
            if elapsed >= duration {
                break;
            }
        }
        // Wait for the stragglers: every permit back means every hold answered.
        let _all = inflight
            .acquire_many(max_inflight as u32)
            .await
            .expect("semaphore open");
        PhaseFigures::timed(op, start, sent, shed)
    }

    /// As many holds as `workers` closed-loop workers manage in `duration`, each waiting for its outcome,
    /// recorded as `op` (`tp@max/hold` with enough workers to saturate the service, `c64/hold` with a crowd's
    /// 64 clients).
    pub async fn closed_loop(
        self: &Arc<Self>,
        op: &str,
        workers: usize,
        duration: Duration,
        bar: &indicatif::ProgressBar,
    ) -> PhaseFigures {
        let op = op.to_owned();
        let start = Instant::now();
        let until = start + duration;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let me = self.clone();
            let op = op.clone();
            set.spawn(async move {
                let mut local = OpStats::default();
                while Instant::now() < until {
                    let (t, out) = me.hold_next(&op).await;
                    local.record(t, Instant::now(), out.code());
                }
                local
            });
        }
        closed_loop_figures(&self.rec, op, set, start, duration, bar).await
    }

    /// `workers` closed-loop workers polling `GET /v1/queue/status` with the users' valid tokens for `duration`.
    pub async fn status_polls(
        self: &Arc<Self>,
        workers: usize,
        duration: Duration,
        bar: &indicatif::ProgressBar,
    ) -> PhaseFigures {
        let op = rounds::ops::POLL_STATUS.to_owned();
        let start = Instant::now();
        let until = start + duration;
        let mut set = tokio::task::JoinSet::new();
        for w in 0..workers.max(1) {
            let me = self.clone();
            let op = op.clone();
            set.spawn(async move {
                let mut local = OpStats::default();
                let mut i = w;
                let mut poller =
                    StatusPoller::new(me.api.base()).expect("the bench's api is plain http");
                while Instant::now() < until {
                    let (idx, _, qt) = &me.users[i % me.users.len()];
                    i += workers;
                    let (out, t) = poller.poll(qt).await;
                    local.record(t, Instant::now(), out.code());
                    if !matches!(out, Outcome::Done(_)) {
                        me.ledger.observe(&op, *idx, None, &out, &[]);
                    }
                }
                local
            });
        }
        closed_loop_figures(&self.rec, op, set, start, duration, bar).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn layout_respects_the_service_limits() {
        for (capacity, users) in [
            (103_500, 1000),
            (31_050, 300),
            (100, 1),
            (5_000_000, 2000),
            (10, 10_000),
        ] {
            let (dates, seats) = layout(capacity, users);
            assert!(
                (MIN_DATES as usize..=MAX_DATES as usize).contains(&dates),
                "{dates}"
            );
            assert!(
                seats >= 1 && seats as u64 <= MAX_SEATS.min(4 * users as u64),
                "{seats}"
            );
            if capacity <= MAX_DATES * MAX_SEATS.min(4 * users as u64) {
                assert!(
                    dates as u64 * seats as u64 >= capacity,
                    "{capacity} {users}: {dates}x{seats}"
                );
            }
        }
    }

    #[test]
    fn targets_are_fresh_spread_and_within_the_hold_limit() {
        let (dates, seats, users) = (32usize, 97i32, 25usize);
        let capacity = dates as u64 * seats as u64;
        let mut seen = HashSet::new();
        let mut per_user_date: HashMap<(usize, usize), u64> = HashMap::new();
        for k in 0..capacity {
            let (d, s, u) = target(k, dates, seats, users);
            assert!(d < dates && (1..=seats).contains(&s) && u < users);
            assert!(seen.insert((d, s)), "seat {d}/{s} targeted twice");
            *per_user_date.entry((u, d)).or_default() += 1;
            // Consecutive holds land on different dates.
            if k > 0 {
                assert_ne!(target(k - 1, dates, seats, users).0, d);
            }
        }
        assert!(per_user_date.values().all(|n| *n <= 4));
        assert_eq!(
            target(capacity, dates, seats, users),
            target(0, dates, seats, users)
        );
    }
}
