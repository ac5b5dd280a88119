//! What the run must prove, from the service's own answers: no seat sold twice (no two confirmed reservations
//! of one seat; a cancelled one frees its seat for the next buyer), no accepted request left without an
//! outcome, no successful payment missing from its owner's reservations. Also flags answers that
//! break the contract (a code with the wrong status, a code the operation cannot fail with, any 5xx).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::client::{Api, Caller, Outcome, PENDING, TRANSPORT};
use crate::user::User;

/// The kind of command a request id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    Join,
    Hold,
    Pay,
    Release,
    /// A reservation's cancellation (v3).
    Cancel,
}

/// An accepted command whose outcome had not come when its caller stopped waiting.
#[derive(Debug, Clone)]
struct PendingReq {
    user: usize,
    request_id: Uuid,
    kind: Kind,
}

/// A payment the service said SUCCEEDED.
#[derive(Debug, Clone)]
struct Paid {
    user: usize,
    date_id: String,
    seat_no: i64,
    reservation_id: String,
}

/// Everything the phases saw that the verifier needs, plus contract anomalies.
#[derive(Default)]
pub struct Ledger {
    pending: Mutex<Vec<PendingReq>>,
    paid: Mutex<Vec<Paid>>,
    anomalies: Mutex<BTreeMap<String, u64>>,
}

/// The HTTP status API.md gives each error code.
pub fn contract_status(code: &str) -> Option<u16> {
    Some(match code {
        "VALIDATION_FAILED" => 400,
        "UNAUTHORIZED" | "QUEUE_TOKEN_INVALID" | "QUEUE_TOKEN_EXPIRED" => 401,
        "QUEUE_NOT_ADMITTED" | "FORBIDDEN" => 403,
        "CONCERT_NOT_FOUND" | "DATE_NOT_FOUND" | "SEAT_NOT_FOUND" | "HOLD_NOT_FOUND"
        | "REQUEST_NOT_FOUND" | "NOT_FOUND" | "USER_NOT_FOUND" => 404,
        "METHOD_NOT_ALLOWED" => 405,
        "SEAT_UNAVAILABLE" | "HOLD_LIMIT_REACHED" | "ALREADY_PAID" => 409,
        "HOLD_EXPIRED" => 410,
        "PAYLOAD_TOO_LARGE" => 413,
        "UNSUPPORTED_MEDIA_TYPE" => 415,
        "INSUFFICIENT_BALANCE" | "INVALID_AMOUNT" | "IDEMPOTENCY_KEY_REUSED" => 422,
        "RATE_LIMITED" => 429,
        "INTERNAL" => 500,
        "UNAVAILABLE" => 503,
        _ => return None,
    })
}

/// The codes a command of `kind` may fail with in this benchmark without anything being wrong.
pub fn expected_codes(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Join => &[],
        Kind::Hold => &["SEAT_UNAVAILABLE", "HOLD_LIMIT_REACHED"],
        Kind::Pay => &[
            "INSUFFICIENT_BALANCE",
            "HOLD_EXPIRED",
            "HOLD_NOT_FOUND",
            "ALREADY_PAID",
        ],
        Kind::Release => &["HOLD_EXPIRED", "HOLD_NOT_FOUND", "ALREADY_PAID"],
        Kind::Cancel => &["ALREADY_CANCELED", "CANCEL_CLOSED", "RESERVATION_NOT_FOUND"],
    }
}

impl Ledger {
    /// Looks at one outcome of `op`: remembers it if still pending (so the verifier chases it) and notes an
    /// anomaly if it failed with a code outside `expected` or with a status the contract does not give its code.
    pub fn observe(
        &self,
        op: &str,
        user: usize,
        kind: Option<Kind>,
        outcome: &Outcome,
        expected: &[&str],
    ) {
        match outcome {
            Outcome::Pending(request_id) => match kind {
                Some(kind) => self.pending.lock().expect("ledger").push(PendingReq {
                    user,
                    request_id: *request_id,
                    kind,
                }),
                None => self.anomaly(format!("{op}: 202 on a call that is not a command")),
            },
            Outcome::Failed { status, code } => {
                if let Some(want) = contract_status(code) {
                    // A poll without wait gives the problem inside a 200 document; its own status is what counts.
                    if *status != want && *status != 0 {
                        self.anomaly(format!(
                            "{op}: {code} answered with {status}, contract says {want}"
                        ));
                    }
                }
                if *status >= 500 {
                    self.anomaly(format!("{op}: server error {status} {code}"));
                } else if !expected.contains(&code.as_str()) {
                    self.anomaly(format!("{op}: unexpected {status} {code}"));
                }
            }
            Outcome::Transport(e) => self.anomaly(format!("{op}: no HTTP answer ({})", short(e))),
            Outcome::Done(_) => {}
        }
    }

    /// Notes a successful payment's result: one seat (v1), or each seat of a checkout's `reservations`.
    pub fn paid(&self, op: &str, user: usize, result: &Value) {
        if let Some(seats) = result.get("reservations").and_then(Value::as_array) {
            if seats.is_empty() {
                self.anomaly(format!("{op}: SUCCEEDED checkout without reservations"));
            }
            for seat in seats {
                self.paid_seat(op, user, seat);
            }
            return;
        }
        self.paid_seat(op, user, result);
    }

    /// Notes one paid seat (`date_id`, `seat_no`, `reservation_id`).
    fn paid_seat(&self, op: &str, user: usize, result: &Value) {
        let date_id = result
            .get("date_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let seat_no = result
            .get("seat_no")
            .and_then(Value::as_i64)
            .unwrap_or_default();
        let reservation_id = result
            .get("reservation_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if date_id.is_empty() || reservation_id.is_empty() || seat_no == 0 {
            self.anomaly(format!(
                "{op}: SUCCEEDED payment without date_id, seat_no or reservation_id"
            ));
        }
        self.paid.lock().expect("ledger").push(Paid {
            user,
            date_id,
            seat_no,
            reservation_id,
        });
    }

    /// Counts one anomaly under `what`.
    pub fn anomaly(&self, what: String) {
        *self
            .anomalies
            .lock()
            .expect("ledger")
            .entry(what)
            .or_default() += 1;
    }

    /// The anomalies seen so far, by description.
    pub fn anomalies(&self) -> BTreeMap<String, u64> {
        self.anomalies.lock().expect("ledger").clone()
    }

    /// How many payments SUCCEEDED so far.
    pub fn payments(&self) -> usize {
        self.paid.lock().expect("ledger").len()
    }
}

fn short(e: &str) -> String {
    e.chars().take(80).collect()
}

/// The verifier's findings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Seats paid more than once, or reserved by more than one user (or twice), counting only reservations not
    /// cancelled: the union of both.
    pub oversold: u64,
    /// Accepted requests never decided, plus SUCCEEDED payments missing from their owner's reservations.
    pub lost: u64,
    /// Seats with more than one SUCCEEDED payment in the answers received whose reservation was not cancelled.
    pub double_paid_seats: u64,
    /// Seats found in the confirmed reservations of more than one user (or twice).
    pub double_reserved_seats: u64,
    /// Requests still pending when their caller stopped waiting.
    pub chased: u64,
    /// Of those, decided later.
    pub chased_decided: u64,
    /// Of those, never decided within the deadline.
    pub undecided: u64,
    /// SUCCEEDED payments whose reservation is not in the owner's reservations.
    pub missing_reservations: u64,
    /// SUCCEEDED payments seen.
    pub payments_seen: u64,
    /// Reservations found over all users.
    pub reservations_total: u64,
    /// Users whose reservations could not be read.
    pub unreadable_users: u64,
    /// Examples of what went wrong.
    pub details: Vec<String>,
}

/// Chases pending requests until `deadline`, then reads every user's reservations and checks the invariants.
pub async fn verify(
    api: &Api,
    users: &[User],
    ledger: &Ledger,
    deadline: Duration,
    progress: &indicatif::ProgressBar,
) -> Verification {
    let mut v = Verification::default();
    let pending = std::mem::take(&mut *ledger.pending.lock().expect("ledger"));
    v.chased = pending.len() as u64;
    progress.set_length(pending.len() as u64 + users.len() as u64);

    // Chase the undecided, all at once (the client bounds the in-flight count).
    let until = Instant::now() + deadline;
    let chases = pending.iter().map(|p| async move {
        let caller = Caller {
            token: &users[p.user].token,
            queue: None,
        };
        loop {
            let left = until
                .saturating_duration_since(Instant::now())
                .as_secs()
                .min(10);
            let outcome = api.poll_request(caller, p.request_id, left.max(1)).await;
            let undecided = matches!(outcome.code(), Some(PENDING) | Some(TRANSPORT));
            if !undecided || Instant::now() >= until {
                progress.inc(1);
                return (p, outcome);
            }
            if matches!(outcome, Outcome::Transport(_)) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    for (p, outcome) in futures::future::join_all(chases).await {
        if matches!(outcome, Outcome::Done(_) | Outcome::Failed { .. }) {
            let op = format!("verify/{:?}", p.kind).to_lowercase();
            ledger.observe(&op, p.user, Some(p.kind), &outcome, expected_codes(p.kind));
        }
        match &outcome {
            Outcome::Pending(_) | Outcome::Transport(_) => {
                v.undecided += 1;
                if v.details.len() < 20 {
                    v.details.push(format!(
                        "{:?} request {} never decided",
                        p.kind, p.request_id
                    ));
                }
            }
            Outcome::Done(result) => {
                v.chased_decided += 1;
                if p.kind == Kind::Pay {
                    ledger.paid("verify/pay", p.user, result);
                }
            }
            Outcome::Failed { .. } => v.chased_decided += 1,
        }
    }

    // Every seat each user holds a reservation for.
    let reads = users.iter().map(|u| async move {
        let out = api
            .reservations(Caller {
                token: &u.token,
                queue: None,
            })
            .await;
        progress.inc(1);
        (u.idx, out)
    });
    let mut seat_owners: HashMap<(String, i64), Vec<usize>> = HashMap::new();
    let mut reservation_ids: HashSet<(usize, String)> = HashSet::new();
    let mut canceled: HashSet<String> = HashSet::new();
    for (idx, out) in futures::future::join_all(reads).await {
        let Some(list) = out
            .done()
            .and_then(|b| b.get("reservations"))
            .and_then(Value::as_array)
        else {
            v.unreadable_users += 1;
            continue;
        };
        for r in list {
            let date = r
                .get("date_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let seat = r.get("seat_no").and_then(Value::as_i64).unwrap_or_default();
            let rid = r
                .get("reservation_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            // A cancelled reservation gave its seat back: another may hold it now (v3).
            if r.get("status").and_then(Value::as_str) == Some("CANCELED") {
                canceled.insert(rid.clone());
            } else {
                seat_owners.entry((date, seat)).or_default().push(idx);
            }
            reservation_ids.insert((idx, rid));
            v.reservations_total += 1;
        }
    }

    let paid = ledger.paid.lock().expect("ledger").clone();
    v.payments_seen = paid.len() as u64;
    let mut paid_per_seat: HashMap<(String, i64), u64> = HashMap::new();
    for p in &paid {
        if !canceled.contains(&p.reservation_id) {
            *paid_per_seat
                .entry((p.date_id.clone(), p.seat_no))
                .or_default() += 1;
        }
        if !reservation_ids.contains(&(p.user, p.reservation_id.clone())) {
            v.missing_reservations += 1;
            if v.details.len() < 20 {
                v.details.push(format!(
                    "payment for reservation {} (seat {}/{}) not in the payer's reservations",
                    p.reservation_id, p.date_id, p.seat_no
                ));
            }
        }
    }
    let mut oversold: BTreeSet<(String, i64)> = BTreeSet::new();
    for (seat, n) in paid_per_seat {
        if n > 1 {
            v.double_paid_seats += 1;
            if v.details.len() < 20 {
                v.details
                    .push(format!("seat {}/{} paid {n} times", seat.0, seat.1));
            }
            oversold.insert(seat);
        }
    }
    for (seat, owners) in seat_owners {
        if owners.len() > 1 {
            v.double_reserved_seats += 1;
            if v.details.len() < 20 {
                v.details.push(format!(
                    "seat {}/{} reserved {} times (users {:?})",
                    seat.0,
                    seat.1,
                    owners.len(),
                    owners
                ));
            }
            oversold.insert(seat);
        }
    }
    v.oversold = oversold.len() as u64;
    v.lost = v.undecided + v.missing_reservations;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_codes_with_the_wrong_status_and_unexpected_codes() {
        let l = Ledger::default();
        l.observe(
            "race/hold",
            0,
            Some(Kind::Hold),
            &Outcome::Failed {
                status: 409,
                code: "SEAT_UNAVAILABLE".into(),
            },
            &["SEAT_UNAVAILABLE"],
        );
        assert!(l.anomalies().is_empty());
        l.observe(
            "race/hold",
            0,
            Some(Kind::Hold),
            &Outcome::Failed {
                status: 400,
                code: "SEAT_UNAVAILABLE".into(),
            },
            &["SEAT_UNAVAILABLE"],
        );
        l.observe(
            "race/pay",
            0,
            Some(Kind::Pay),
            &Outcome::Failed {
                status: 500,
                code: "INTERNAL".into(),
            },
            &[],
        );
        let a = l.anomalies();
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.keys().any(|k| k.contains("contract says 409")));
        assert!(a.keys().any(|k| k.contains("server error 500")));
    }

    #[test]
    fn notes_every_seat_of_a_checkout() {
        let l = Ledger::default();
        l.paid(
            "soak/pay",
            1,
            &serde_json::json!({ "payment_id": "p", "amount": 2, "reservations": [
                { "reservation_id": "r1", "date_id": "d", "seat_no": 3, "price": 1 },
                { "reservation_id": "r2", "date_id": "d", "seat_no": 4, "price": 1 } ] }),
        );
        l.paid(
            "race/pay",
            2,
            &serde_json::json!({ "reservation_id": "r3", "date_id": "d", "seat_no": 5 }),
        );
        assert_eq!(l.payments(), 3);
        assert!(l.anomalies().is_empty(), "{:?}", l.anomalies());
    }

    #[test]
    fn remembers_pending_commands() {
        let l = Ledger::default();
        l.observe(
            "race/pay",
            3,
            Some(Kind::Pay),
            &Outcome::Pending(Uuid::now_v7()),
            &[],
        );
        assert_eq!(l.pending.lock().unwrap().len(), 1);
    }
}
